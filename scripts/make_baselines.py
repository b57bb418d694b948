"""Copy the papers' rows that the specs compare with from the project's paper-table transcriptions into
baselines/, adding the `id` column specs name. Values are copied as printed, never edited.

    python scripts/make_baselines.py [--tables DIR]   (DIR: the transcriptions, one CSV per paper table)

bnn.csv <- bnn_table1_test_error.csv; dorefa.csv <- dorefa_table1_svhn.csv (ids
dorefa-svhn-W{w}A{a}G{g}-{A|B|C|D|all}-{metric}); xnor.csv <- xnor_net_tables.csv (AlexNet
rows) + xnor_net_reimplementations.csv (labelled reimplementation in their own `paper` column).
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def bnn_id(r: dict) -> str:
    method = {"BNN (Theano)": "theano", "BNN (Torch7)": "torch7", "No regularization (no binarization)": "float",
              "BinaryConnect (Courbariaux et al. 2015)": "bc"}.get(r["method"])
    method = method or slug(re.split(r"[(\[]", r["method"])[0])
    return f"bnn-{slug(r['dataset'])}-{method}"


def dorefa_id(r: dict) -> str:
    model = r["model"].replace("Model ", "")
    return f"dorefa-svhn-W{r['w_bits']}A{r['a_bits']}G{r['g_bits']}-{model}-{r['metric']}"


XNOR_METHODS = {"BWN, alpha via": "bwn-eq6", "BWN, alpha as": "bwn-learned-alpha", "BWN": "bwn",
                "BinaryConnect": "bc", "XNOR-Net block C-B-A-P": "xnor-cbap", "XNOR-Net block B-A-C-P": "xnor-bacp",
                "XNOR-Net with binary grad": "xnor-binary-gradient", "XNOR-Net removing": "xnor-no-beta",
                "XNOR": "xnor", "BNN": "bnn", "full precision": "float", "floating point": "float"}


def xnor_id(r: dict) -> str:
    who = "reimpl" if "reimplementation" in r["paper"] else "official" if "official" in r["paper"] else "paper"
    table = r["table"].split("(")[0].strip().lower().replace("table ", "t").replace(" ", "-")
    method = next(v for k, v in XNOR_METHODS.items() if r["method"].startswith(k))
    model = {"AlexNet": "alexnet", "Network-in-Network (NIN)": "nin"}[r["model"]]
    where = table if who == "paper" else who
    return f"xnor-{where}-{model}-{method}-{r['metric']}"


def dorefa_selection(r: dict) -> dict:
    """DoReFa-Net's Table 1 reports the maximum test accuracy over 200 epochs: selected on the test set."""
    return {"selection": "best_test" if r["metric"].startswith("test_acc_max_over") else ""}


def copy(sources: list[Path], target: Path, make_id, keep=lambda r: True, extra=lambda r: {}) -> int:
    rows, seen = [], set()
    for src in sources:
        with open(src, newline="") as f:
            for r in csv.DictReader(f):
                if not keep(r):
                    continue
                rid = make_id(r)
                if rid in seen:
                    raise SystemExit(f"{src}: duplicate id {rid}")
                seen.add(rid)
                rows.append({"id": rid, **r, **extra(r)})
    with open(target, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", type=Path, default=ROOT.parent / "shared" / "paper-tables")
    t = ap.parse_args().tables
    out = ROOT / "baselines"
    print("bnn.csv", copy([t / "bnn_table1_test_error.csv"], out / "bnn.csv", bnn_id))
    print("dorefa.csv", copy([t / "dorefa_table1_svhn.csv"], out / "dorefa.csv", dorefa_id, extra=dorefa_selection))
    print("xnor.csv", copy([t / "xnor_net_tables.csv", t / "xnor_net_reimplementations.csv"], out / "xnor.csv",
                           xnor_id, keep=lambda r: r["model"].startswith(("AlexNet", "Network-in-Network"))))


if __name__ == "__main__":
    main()
