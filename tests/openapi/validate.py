"""Validates an OpenAPI document (a file, or a URL) with openapi-spec-validator, and checks what the
document must say of the to-do example: paths, schemas, filters, pagination, errors, Location."""

import json
import sys
import urllib.request

from openapi_spec_validator import validate


def load(location):
    if location.startswith("http://") or location.startswith("https://"):
        with urllib.request.urlopen(location) as response:
            assert response.headers["content-type"] == "application/json", response.headers
            return json.load(response)
    with open(location) as f:
        return json.load(f)


def main(location):
    doc = load(location)
    validate(doc)
    assert doc["openapi"].startswith("3.1"), doc["openapi"]
    paths = doc["paths"]
    for path in ["/api/lists/", "/api/lists/{id}/", "/api/tasks/", "/api/tasks/{id}/"]:
        assert path in paths, f"{path} missing: {sorted(paths)}"
    task = doc["components"]["schemas"]["Task"]
    assert task["properties"]["id"]["readOnly"] is True
    assert task["properties"]["text"]["maxLength"] == 140
    task_input = doc["components"]["schemas"]["TaskInput"]
    assert set(task_input["required"]) == {"text", "list_id"}, task_input["required"]
    assert task_input["additionalProperties"] is False
    params = {p["name"] for p in paths["/api/tasks/"]["get"]["parameters"]}
    assert {"limit", "offset", "id", "done", "list_id"} <= params, params
    created = paths["/api/tasks/"]["post"]["responses"]["201"]
    assert "Location" in created["headers"]
    assert paths["/api/tasks/{id}/"]["delete"]["responses"]["404"]["$ref"].endswith("/NotFound")
    print(f"{location}: a valid OpenAPI {doc['openapi']} document, {len(paths)} paths")


if __name__ == "__main__":
    main(sys.argv[1])
