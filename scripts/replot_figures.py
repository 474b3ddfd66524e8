"""Re-draw the committed experiment figures from their saved numbers, without measuring again.

    python scripts/replot_figures.py

landscape-b3000: landscape-1d.png, landscape-2d.png, roughness.png from landscape.csv;
responses-b3000-spr: responses.png from responses.csv (the mean over seeds per layer).
"""

from __future__ import annotations

from pathlib import Path

from reslab.experiments import landscape, responses

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def main() -> None:
    for path in landscape.replot(RESULTS / "landscape-b3000"):
        print(path)
    folder = RESULTS / "responses-b3000-spr"
    print(responses.plot_responses(responses.read_curves(folder / "responses.csv"), folder / "responses.png"))


if __name__ == "__main__":
    main()
