"""Published HumanEval-X figures (in %), set beside ours by the report. Facts copied from their sources:

- ``GENERATION_PASS1``: pass@1 per language at n=20, temperature 0.2, top-p 0.95, from THUDM/CodeGeeX2's
  ``README_EN.md`` (commit 754a208), which says they reproduce with its ``scripts/run_humanevalx.sh``.
- ``PYTHON_PASS_AT_K``: HumanEval (Python) pass@1/10/100 from the same page: pass@1 at n=20, t=0.2; pass@10 and
  pass@100 at n=200, t=0.8, top-p 0.95.
- ``TRANSLATION_PASS_AT_K``: pass@1/10/100 per source->target pair, exact figures of the table image
  ``resources/en/hx_translation.png`` in THUDM/CodeGeeX (the KDD 2023 paper's translation table; n=200). The
  fine-tuned CodeGeeX-13B-FT rows are left out: those weights were not released.

Sampling error: at n=20 a language's pass@1 has a standard error under about 1 point (164 problems), so a gap of
more than about 2 points on the converted CodeGeeX-13B points to a systematic difference (prompt, stop rules, the
maximum length: the original generated up to 1,024 tokens), not to chance.
"""
from __future__ import annotations

GENERATION_SOURCE = "THUDM/CodeGeeX2 README_EN.md (754a208), n=20, t=0.2, top-p 0.95"
TRANSLATION_SOURCE = "THUDM/CodeGeeX resources/en/hx_translation.png (KDD 2023), n=200"
OURS_PUBLISHED_AS = "CodeGeeX-13B"

GENERATION_COLUMNS = ("python", "cpp", "java", "js", "go", "rust", "overall")
GENERATION_PASS1 = {            # pass@1 in GENERATION_COLUMNS order
    "CodeGen-16B-multi": (19.2, 18.1, 15.0, 18.4, 13.0, 1.8, 14.2),
    "CodeGeeX-13B": (22.9, 17.1, 20.0, 17.6, 14.4, 4.3, 16.0),
    "Replit-code-v1-3B": (22.0, 20.1, 20.1, 20.1, 12.2, 8.6, 17.2),
    "CodeGen2.5-7B-multi": (30.6, 24.3, 29.0, 27.5, 18.9, 20.1, 25.1),
    "StarCoder-15B": (35.5, 28.2, 31.5, 33.2, 21.3, 17.8, 27.9),
    "CodeGeeX2-6B": (35.9, 29.3, 30.8, 32.2, 22.5, 18.1, 28.1),
}

PYTHON_PASS_AT_K = {           # (pass@1, pass@10, pass@100)
    "CodeGeeX-13B": (22.9, 39.6, 60.9),
    "CodeGen-16B-multi": (19.2, 34.6, 55.2),
    "StarCoder-15B": (33.2, 61.0, 84.7),
    "CodeGeeX2-6B": (35.9, 62.6, 88.3),
}

TRANSLATION_PASS_AT_K = {      # "src->tgt": (pass@1, pass@10, pass@100)
    "CodeGeeX-13B": {
        "cpp->go": (8.64, 18.79, 31.76), "cpp->java": (22.56, 40.91, 64.08), "cpp->js": (30.23, 55.68, 75.58),
        "cpp->python": (27.18, 49.02, 67.69), "go->cpp": (29.83, 41.98, 58.15), "go->java": (22.89, 41.04, 61.46),
        "go->js": (25.24, 46.5, 69.93), "go->python": (35.92, 56.02, 77.32), "java->cpp": (39.33, 58.48, 72.36),
        "java->go": (17.17, 32.74, 47.71), "java->js": (44.19, 64.22, 82.89), "java->python": (43.41, 68.46, 84.03),
        "js->cpp": (30.32, 51.63, 69.37), "js->go": (11.91, 26.39, 39.81), "js->java": (24.68, 48.35, 69.03),
        "js->python": (31.15, 54.02, 72.36), "python->cpp": (26.54, 43.56, 56.48),
        "python->go": (9.56, 23.83, 33.56), "python->java": (25.84, 41.52, 59.72),
        "python->js": (23.22, 47.33, 65.87),
    },
    "CodeGen-Multi-16B": {
        "cpp->go": (27.94, 49.73, 68.32), "cpp->java": (43.2, 69.84, 88.82), "cpp->js": (54.51, 71.5, 83.14),
        "cpp->python": (33.83, 55.37, 76.64), "go->cpp": (32.95, 45.88, 59.56), "go->java": (36.55, 59.12, 78.7),
        "go->js": (38.93, 56.68, 70.68), "go->python": (38.32, 50.57, 68.65), "java->cpp": (41.42, 54.68, 65.5),
        "java->go": (34.0, 48.49, 67.94), "java->js": (57.65, 67.9, 79.22), "java->python": (52.73, 69.3, 82.74),
        "js->cpp": (35.41, 53.12, 64.47), "js->go": (33.38, 49.08, 64.14), "js->java": (33.79, 56.06, 74.0),
        "js->python": (35.52, 52.23, 69.78), "python->cpp": (35.94, 47.81, 59.37),
        "python->go": (28.87, 41.01, 57.72), "python->java": (29.27, 45.7, 64.45),
        "python->js": (43.4, 66.26, 82.55),
    },
    "InCoder-6.7B": {
        "cpp->go": (25.54, 39.11, 58.02), "cpp->java": (34.04, 57.02, 68.7), "cpp->js": (37.05, 65.05, 79.61),
        "cpp->python": (34.37, 58.41, 78.57), "go->cpp": (30.45, 48.47, 62.81), "go->java": (34.52, 53.95, 69.92),
        "go->js": (39.37, 63.63, 80.75), "go->python": (34.14, 54.52, 70.88), "java->cpp": (40.01, 55.17, 70.39),
        "java->go": (21.58, 35.2, 54.97), "java->js": (43.2, 68.24, 84.39), "java->python": (42.76, 65.55, 80.43),
        "js->cpp": (35.47, 54.48, 70.71), "js->go": (25.79, 42.96, 61.47), "js->java": (30.67, 50.9, 71.03),
        "js->python": (23.18, 50.47, 67.26), "python->cpp": (26.11, 41.0, 54.25),
        "python->go": (15.69, 27.57, 43.67), "python->java": (26.74, 42.66, 61.2),
        "python->js": (37.05, 58.85, 78.91),
    },
}
