"""Low-bit training reproduction suite: declarative specs -> measured runs -> paper-vs-ours tables.

The data path, one package per step (each imports only from those below it):

    reproductions/NAME.toml --spec/--> Spec --run/ (plan, execute, measure)--> records.py
        --report/ (+ baselines/*.csv)--> results/NAME.PROFILE.md + .png
        --check/ (vs results/reference/)--> pass / what moved

Below them: studies/ and train/ (what a run does), models/, nn/, quant/, data/ (what it is made of).
"""

__version__ = "0.1.0"
