"""The ceiling for the HTTP benchmarks: a Flask app with nothing in it but one
small JSON answer, served by the same gunicorn command as the service
(``bench.common.served(settings, workers, BARE_APP)``)."""

from __future__ import annotations

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

app = Flask(__name__)


@app.get("/readyz")
def readyz() -> ResponseReturnValue:
    return jsonify(status="ready")


@app.get("/bare")
def bare() -> ResponseReturnValue:
    return jsonify(ok=True)
