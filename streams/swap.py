"""Changing the model of running workers (`megatrading model use`, docs/design.md "Changing the model"):
which model a worker starts on, and a new model loaded and tried before the worker's batcher swaps it in.

Operators write the wanted spec to Redis (`mt:control`, streams/sink.py); each worker reads it with its
heartbeat and, when it differs from what it serves, loads the new forecaster in a thread of its own
(torch's load and a first forward pass take seconds), tries it on a window it has scored, and swaps it
into the MicroBatcher between two model batches (streams/batcher.py). A model that does not load,
was trained on windows of another shape, or fails its trial is refused: the old one goes on serving.
"""

from __future__ import annotations

import logging
import math

import redis

from model.serving.forecaster import Forecaster
from model.serving.load import load_forecaster, serving_mismatch
from orderbook.windows import Window
from streams.config import Settings
from streams.sink import RedisSink

log = logging.getLogger(__name__)


def load_checked(settings: Settings, spec: str, example: Window | None = None) -> Forecaster:
    """The forecaster of `spec`, on the worker's device, refused (ValueError, or the load's own error)
    where it cannot score the worker's windows: another window shape or feature columns, or a trial
    forecast of `example` (a window the worker scored) that fails."""
    forecaster = load_forecaster(spec, settings.device)
    why = serving_mismatch(forecaster, settings.window)
    if why is not None:
        raise ValueError(f"{forecaster.model_id} {why}")
    if example is not None:
        forecaster.warm_up(example)
        # the first call allocates what the model needs, off the forecasts' path; explanations are left
        # out (an infinite threshold): they only add a backward pass of the same model
        forecaster.forecast([example], math.inf)
    return forecaster


def initial_model(settings: Settings) -> tuple[Forecaster, str, str | None, str]:
    """The model a worker starts on: the one operators want (`mt:control`) where one is set and it
    passes `load_checked`, else the worker's own `--model`. Returns it, its spec, the wanted spec it
    refused (None) and why ("")."""
    wanted = None
    client = RedisSink.from_url(settings.redis_url)
    try:
        wanted = client.wanted_model()
    except redis.RedisError as err:  # the heartbeat reads it again once Redis is back
        log.warning("the wanted model could not be read from Redis (%s: %s): starting on %s", type(err).__name__,
                    err, settings.model)  # fmt: skip
    finally:
        client.redis.close()
    if wanted and wanted != settings.model:
        try:
            return load_checked(settings, wanted), wanted, None, ""
        except Exception as err:
            why = f"{wanted}: {type(err).__name__}: {err}"
            log.error("the wanted model is refused (%s): starting on %s", why, settings.model)
            return load_forecaster(settings.model, settings.device), settings.model, wanted, why
    return load_forecaster(settings.model, settings.device), settings.model, None, ""
