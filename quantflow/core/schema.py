"""JSON Schema of pipelines.yaml for editors (draft-07 compatible: `definitions`, not `$defs`)."""

from __future__ import annotations

import json
from typing import Any

from quantflow.core.spec import Spec

DRAFT7 = "http://json-schema.org/draft-07/schema#"


def json_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema(ref_template="#/definitions/{model}")
    text = json.dumps(schema).replace('"$defs"', '"definitions"')
    out = json.loads(text)
    out = {**out, "$schema": DRAFT7, "title": "quantflow pipelines.yaml"}
    return out
