"""Error rates of the adaptive protocol's sequential procedure, on simulated studies (no training).

Prints, for the default design (first round 3 seeds, rounds of 3, at most 20, Pocock-type
spending, alpha 0.05, margin 1 point) and for O'Brien-Fleming-type spending:
- the family-wise false-positive rate on null studies (2 contexts x 3 alternatives, no difference)
  under a normal and a binomial (280 test examples) accuracy model;
- the power (share of comparisons ending significant in the right direction) for planted paired
  differences of d_z = 0.5, 1.0 and 2.0, with 6 comparisons and with 1, and the mean seeds used.

    python benchmarks/sequential_error.py [--studies 2000]
"""

from __future__ import annotations

import argparse
import math

from normlab.analysis.sequential import SPENDING_FUNCTIONS, SequentialDesign
from normlab.analysis.simulate import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=2000)
    studies = parser.parse_args().studies
    sd = 0.01
    for spending in SPENDING_FUNCTIONS:
        design = SequentialDesign(spending=spending)
        print(f"spending {spending}: looks {design.looks()}")
        for model in ("normal", "binomial"):
            for arm_sd in (0.01, 0.002):
                result = simulate(
                    design, [[0.0] * 3] * 2, studies=studies, sd=arm_sd, model=model,
                    test_examples=280,
                )  # fmt: skip
                print(
                    f"  null, {model}, arm sd {arm_sd}: family-wise error "
                    f"{result.family_error_rate:.4f} ± {result.monte_carlo_error():.4f}, "
                    f"equivalent {result.decided.mean():.2f}, seeds {result.mean_seeds:.1f}"
                )
        for d_z in (0.5, 1.0, 2.0):
            effect = d_z * sd * math.sqrt(2)
            six = simulate(design, [[effect] * 3] * 2, studies=studies, sd=sd)
            one = simulate(design, [[effect]], studies=studies, sd=sd)
            print(
                f"  d_z {d_z}: power {six.decided.mean():.3f} (6 comparisons, "
                f"{six.mean_seeds:.1f} seeds), {one.decided.mean():.3f} (1 comparison, "
                f"{one.mean_seeds:.1f} seeds)"
            )


if __name__ == "__main__":
    main()
