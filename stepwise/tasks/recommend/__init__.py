"""Recommendation from text: user histories and item descriptions in, a ranked list of items out.

`data` reads interaction logs and item texts and splits them leave-last-out (with cold-start items held out
of training), `metrics` scores full rankings of the catalogue.
"""
