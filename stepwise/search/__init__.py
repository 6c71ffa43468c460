"""`stepwise search`: the search space, the Optuna study and the files a search writes.

The recipe that ties them together is `stepwise.recipes.search`.
"""
