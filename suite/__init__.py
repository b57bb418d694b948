"""Low-bit training reproduction suite: declarative specs -> measured runs -> paper-vs-ours tables.

Data path (one module per step):
    reproductions/NAME.toml --spec--> Spec --harness--> runs --records--> results/records/...
        --report (+ baselines/*.csv)--> results/NAME.PROFILE.md + PNG curves
"""

__version__ = "0.1.0"
