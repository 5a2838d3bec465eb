"""Data quality: tools that audit, extend and report on registered tasks (the task machinery is `t5tune.data`).

    from t5tune.quality import contamination, neardup, report
    report.write("my_mix", "reports", feature_lengths={"inputs": 512, "targets": 128})

Modules: `neardup` (near-duplicate pairs over a mixture, Self-Instruct's
ROUGE-L filter), `contamination` (train/evaluation n-gram overlap, clean
masks), `label_issues` (cleanlab on option scores, high-loss targets),
`generate` (Self-Instruct style new instructions), `augment` (paraphrased
templates, back-translated records), `report` and `report_quality` (the
data report `t5tune data report` writes).

Quality imports `t5tune.data`, never the reverse: the near-dedup that task
registration applies (`dedup="near"`) is `t5tune.data.cleaning`'s.
"""
