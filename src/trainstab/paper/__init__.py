"""The paper's findings at proxy scale: measured, plotted and reproduced (``trainstab reproduce``)."""
