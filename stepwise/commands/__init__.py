"""The verbs of the `stepwise` command line, a module per group: each adds its parsers (flags generated from the
options models where there is one) and maps each verb to a handler that calls its recipe. stepwise.cli lists
them; a task's own verbs come from its package (`Task.cli`).
"""
