"""Gains over random-init of a board CSV before and after a change of its reference rows: which
changed sign or crossed p = 0.05. Usage (from the repository root):

    .venv/bin/python benchmarks/reference_margins.py OLD_COMMIT leaderboards/fashion-mnist.csv
"""
import io, subprocess, sys
import pandas as pd
old_ref, path = sys.argv[1], sys.argv[2]
old = pd.read_csv(io.StringIO(subprocess.check_output(["git", "show", f"{old_ref}:{path}"], text=True)))
new = pd.read_csv(path)
key = ["label", "backbone"]
for m in ("knn_top1", "linear_top1", "lowshot_top1_1pct"):
    g, p = f"gain_{m}_mean", f"gain_{m}_p"
    if g not in old or g not in new:
        print(m, "no gain column"); continue
    j = old[key + [g, p]].merge(new[key + [g, p]], on=key, suffixes=("_old", "_new"))
    j = j.dropna(subset=[g + "_old", g + "_new"])
    sign = j[(j[g + "_old"] > 0) != (j[g + "_new"] > 0)]
    sig = j[((j[p + "_old"] < 0.05) != (j[p + "_new"] < 0.05))]
    print(f"{m}: {len(j)} rows; sign changed: {len(sign)}; significance changed: {len(sig)}")
    for _, r in pd.concat([sign, sig]).drop_duplicates(key).iterrows():
        print(f"  {r['label']} ({r['backbone']}): gain {r[g+'_old']:+.2f} (p {r[p+'_old']:.3f}) -> {r[g+'_new']:+.2f} (p {r[p+'_new']:.3f})")
