"""Recipes: one readable module per job, composing the components (data, tasks, train, refine, rl).

    finetune  train a task model            (`stepwise train`)
    rl        REINFORCE from a trained run  (`stepwise rl`)
    evaluate  score a run, step by step     (`stepwise evaluate`)
    predict   records for new inputs        (`stepwise predict`)
    export    ONNX / HF directory + parity  (`stepwise export`)
    distill   a shallower student           (`stepwise distill`)
    prune     fewer FFN neurons + recovery  (`stepwise prune`)
    monitor   stream → sentiment per company per window → alerts, report  (`stepwise monitor`)
"""
