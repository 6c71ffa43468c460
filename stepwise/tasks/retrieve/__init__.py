"""Retrieval: the encoder trained as a two-tower (bi-encoder) retriever, an index, and what sits on top.

The parts are shared by every job that ranks texts for a text (FAQ answers for a question, items for a
user's history): `data` reads query/passage pairs and passage pools, `model` is the bi-encoder,
`objective` its contrastive loss, `metrics` the ranking scores, `embedder` turns texts into vectors on a
backend, `index` stores and searches them, `calibrate` chooses where to abstain.
"""
