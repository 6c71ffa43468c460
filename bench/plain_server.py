"""The baseline service: a FastAPI endpoint written the way Hugging Face's docs show a pipeline —
one request, one forward pass, no batching, no limits. bench/serve.py runs it with uvicorn:

    PLAIN_MODEL=bench/out/hf_sst2_model uvicorn plain_server:app --port 8001
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

app = FastAPI()
classifier = pipeline("text-classification", model=os.environ["PLAIN_MODEL"], device=-1)


class Request(BaseModel):
    texts: list[str]


@app.post("/v1/predict")
def predict(request: Request) -> dict:
    return {"predictions": classifier(request.texts, truncation=True)}


@app.get("/readyz")
def readyz() -> dict:
    return {"status": "ready"}
