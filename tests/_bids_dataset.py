"""A small BIDS + fMRIPrep dataset for tests and bench/bids.py (tiny NIfTIs, real names)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

SPACE = "MNI152NLin2009cAsym"
MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


def write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1))


def make_bids(
    root: Path,
    deriv: Path,
    *,
    subjects: Sequence[str] = ("01",),
    runs: Sequence[int] = (1,),
    task: str = "movie",
    tr: float | None = 1.0,
    n_volumes: int = 20,
    shape: tuple[int, int, int] = (2, 2, 2),
    events: Sequence[tuple[float, float, str]] = ((0.0, 4.0, "clip.mp4"),),
    derivatives: bool = True,
    seed: int = 0,
) -> list[str]:
    """Write a raw dataset (events, sidecar) and fMRIPrep-style derivatives; returns run names."""
    rng = np.random.default_rng(seed)
    write_json(root / "dataset_description.json", {"Name": "test", "BIDSVersion": "1.9.0"})
    sidecar = {"TaskName": task} | ({} if tr is None else {"RepetitionTime": tr})
    write_json(root / f"task-{task}_bold.json", sidecar)
    if derivatives:
        write_json(
            deriv / "dataset_description.json",
            {
                "Name": "fMRIPrep",
                "BIDSVersion": "1.9.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "fMRIPrep"}],
            },
        )
    names = []
    for subject in subjects:
        for run in runs:
            name = f"sub-{subject}_task-{task}_run-{run}"
            names.append(name)
            func = root / f"sub-{subject}" / "func"
            func.mkdir(parents=True, exist_ok=True)
            table = pd.DataFrame(events, columns=["onset", "duration", "stim_file"])
            table.insert(2, "trial_type", "movie")
            table.to_csv(func / f"{name}_events.tsv", sep="\t", index=False, na_rep="n/a")
            if not derivatives:
                continue
            out = deriv / f"sub-{subject}" / "func"
            out.mkdir(parents=True, exist_ok=True)
            data = (100 + rng.standard_normal((*shape, n_volumes))).astype(np.float32)
            img = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]))
            img.header.set_xyzt_units("mm", "sec")
            nib.save(img, out / f"{name}_space-{SPACE}_desc-preproc_bold.nii.gz")
            write_json(out / f"{name}_space-{SPACE}_desc-preproc_bold.json", sidecar)
            confounds = pd.DataFrame(
                rng.standard_normal((n_volumes, len(MOTION))) * 0.01, columns=MOTION
            )
            confounds["framewise_displacement"] = np.r_[np.nan, np.full(n_volumes - 1, 0.1)]
            confounds.to_csv(
                out / f"{name}_desc-confounds_timeseries.tsv", sep="\t", index=False, na_rep="n/a"
            )
    return names
