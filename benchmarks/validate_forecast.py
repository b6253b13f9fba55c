"""Validate the attention-logit and gradient-RMS forecasts against a model actually trained.

Trains the default width ladder (32, 48, 64) and the larger widths given on
the command line (default 96 and 128: the largest that fit a 2-core machine in
minutes), with and without qk-layernorm, forecasts each larger size from the
ladder alone and prints forecast, measured and the error per LR.

    python benchmarks/validate_forecast.py [--widths 96,128]
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from trainstab.config import SweepConfig
from trainstab.forecast import forecast_attention_logits, forecast_gradient_rms
from trainstab.ladder import DEFAULT_WIDTHS, non_embedding_parameters, run_ladder, width_configs
from trainstab.results import gradient_rms_floor
from trainstab.sweep import run_sweep, run_sweeps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="96,128", help="larger widths to train and compare")
    args = parser.parse_args()
    larger = [int(w) for w in args.widths.split(",")]
    base = SweepConfig()
    print(f"seed={base.train.seed} ladder widths={DEFAULT_WIDTHS} validation widths={larger}")
    for qk in (False, True):
        config = dataclasses.replace(base, model=dataclasses.replace(base.model, qk_layernorm=qk))
        ladder = run_ladder("width", width_configs(config, DEFAULT_WIDTHS), run_sweeps)
        print(f"\nqk_layernorm={qk}: ladder parameters {ladder.parameters}")
        for big in width_configs(config, larger):
            n = non_embedding_parameters(big.model_name, big.model)
            measured = run_sweep(big)
            attention = forecast_attention_logits(ladder, n)
            gradients = forecast_gradient_rms(ladder, n, ratio_to_eps=10.0)
            warmup = big.train.warmup_steps
            print(f"  width {big.model.width} ({n} parameters, {attention.extrapolation_decades:+.2f} decades):")
            for f_att, f_grad, run in zip(attention.per_lr, gradients.per_lr, measured.runs, strict=True):
                grad = gradient_rms_floor(run, warmup)
                finite = math.isfinite(f_att.forecast)
                att_err = math.log10(run.max_attention_logit / f_att.forecast) if finite else math.nan
                grad_err = math.log10(grad / f_grad.forecast) if f_grad.forecast > 0 else math.nan
                print(
                    f"    lr={run.lr:<6g} max attention logit forecast {f_att.forecast:9.3g} measured "
                    f"{run.max_attention_logit:9.3g} (error {att_err:+.2f} dex) | gradient RMS forecast "
                    f"{f_grad.forecast:9.3g} measured {grad:9.3g} (error {grad_err:+.2f} dex)"
                )


if __name__ == "__main__":
    main()
