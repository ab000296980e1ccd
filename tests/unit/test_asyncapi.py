"""The AsyncAPI document of ``/ws`` (entrypoints/ws/asyncapi.py): the checked-in copy is current,
it describes every frame type the server decodes and encodes, its own examples and every frame
example in ``docs/protocol.md`` validate against its schemas, and protocol.md's close and error
codes are the document's. (That the document is valid AsyncAPI 3 is checked with the AsyncAPI
parser in tests/integration/test_asyncapi_document.py.)"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from application.errors import WsErrorCode
from application.live.actions import CloseCode
from entrypoints.ws import asyncapi
from entrypoints.ws import protocol as p

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_MD = ROOT / "docs" / "protocol.md"
DOC: dict[str, Any] = asyncapi.build()
BASE = "urn:p2p-chat:asyncapi"
REGISTRY: Registry[Any] = Registry().with_resource(BASE, Resource.from_contents(DOC, default_specification=DRAFT7))
MESSAGES: dict[str, Any] = DOC["channels"]["ws"]["messages"]


def schema_name(message: dict[str, Any]) -> str:
    ref: str = message["payload"]["$ref"]
    return ref.removeprefix("#/components/schemas/")


def validator(message_key: str) -> Draft7Validator:
    """The JSON Schema validator of a message's payload, with the document's references (AsyncAPI
    schemas are JSON Schema draft 7)."""
    ref = f"{BASE}#/components/schemas/{schema_name(MESSAGES[message_key])}"
    return Draft7Validator({"$ref": ref}, registry=REGISTRY, format_checker=Draft7Validator.FORMAT_CHECKER)


def wire_type(message_key: str) -> str:
    schema = DOC["components"]["schemas"][schema_name(MESSAGES[message_key])]
    (tag,) = schema["properties"]["type"]["enum"]
    assert isinstance(tag, str)
    return tag


def conforming_messages(frame: dict[str, Any]) -> list[str]:
    """The messages of the frame's ``type`` whose schema accepts it and has every field it has (a
    server frame's schema allows other fields, which an example must not invent)."""
    found = []
    for key, message in MESSAGES.items():
        if wire_type(key) != frame.get("type") or not validator(key).is_valid(frame):
            continue
        properties = DOC["components"]["schemas"][schema_name(message)]["properties"]
        if set(frame) <= set(properties):
            found.append(key)
    return found


# ---- the document ---------------------------------------------------------------------------


def test_the_checked_in_document_is_the_generated_one() -> None:
    assert asyncapi.DOCUMENT.read_text() == asyncapi.document_bytes().decode(), (
        f"docs/asyncapi.json is stale (a WebSocket frame type changed); regenerate it: {asyncapi.REGENERATE}"
    )


def test_every_frame_the_server_decodes_or_encodes_is_a_message() -> None:
    client = {cls.__name__ for cls in p.ClientFrame.__subclasses__()}
    server = {cls.__name__ for cls in p.ServerFrame.__subclasses__()}
    assert {schema_name(m) for m in MESSAGES.values()} == client | server
    operations = DOC["operations"].values()
    sent = {ref["$ref"].rsplit("/", 1)[1] for op in operations if op["action"] == "send" for ref in op["messages"]}
    received = {
        ref["$ref"].rsplit("/", 1)[1] for op in operations if op["action"] == "receive" for ref in op["messages"]
    }
    assert {schema_name(MESSAGES[k]) for k in sent} == client
    assert {schema_name(MESSAGES[k]) for k in received} == server


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_each_message_example_is_a_valid_frame(key: str) -> None:
    message = MESSAGES[key]
    assert message["examples"], f"{key} has no example"
    frame_class = getattr(p, schema_name(message))
    for example in message["examples"]:
        payload = example["payload"]
        assert conforming_messages(payload) == [key], payload
        if issubclass(frame_class, p.ClientFrame):  # the server's own decoder takes it
            assert type(p.decode_client(json.dumps(payload))) is frame_class
        else:
            assert msgspec.json.decode(msgspec.json.encode(payload), type=frame_class)


def test_a_frame_breaking_its_schema_is_refused() -> None:
    """The schemas are not vacuous: a wrong type, a missing or an unknown field fail."""
    assert conforming_messages({"type": "sendMessage", "to": "2", "message": "hi", "clientMsgId": "c-1"}) == []
    assert conforming_messages({"type": "sendMessage", "to": 2, "message": "hi"}) == []
    assert conforming_messages({"type": "ping", "extra": 1}) == []
    assert (
        conforming_messages({"type": "messageAck", "clientMsgId": "c", "id": "i", "seq": 1, "to": 2, "timestamp": "…"})
        == []
    )


def test_every_error_code_and_close_code_is_described() -> None:
    error_code = DOC["components"]["schemas"]["WsErrorCode"]
    assert error_code["enum"] == sorted(WsErrorCode)
    assert all(error_code["x-enum-descriptions"])
    close_codes = {c["code"] for c in DOC["channels"]["ws"]["x-close-codes"]}
    assert close_codes >= set(CloseCode)


# ---- docs/protocol.md -------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    line: int
    section: str  # the headings above it, "A > B"
    text: str

    @property
    def http(self) -> bool:
        """Under a heading that starts with "HTTP": an HTTP body, described by the OpenAPI document."""
        return any(heading.startswith("HTTP") for heading in self.section.split(" > "))


def protocol_examples(markdown: str) -> list[Example]:
    """Every ```json block and every inline code span that starts with ``{`` in protocol.md."""
    examples: list[Example] = []
    headings: dict[int, str] = {}
    paragraph: list[tuple[int, str]] = []

    def section() -> str:
        return " > ".join(headings[level] for level in sorted(headings))

    def flush() -> None:
        text = "\n".join(line for _, line in paragraph)
        for match in re.finditer(r"`([^`]+)`", text):
            if match.group(1).lstrip().startswith("{"):
                line = paragraph[0][0] + text.count("\n", 0, match.start())
                examples.append(Example(line, section(), match.group(1)))
        paragraph.clear()

    lines = markdown.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if heading := re.match(r"(#+) (.*)", line):
            flush()
            level = len(heading.group(1))
            headings = {k: v for k, v in headings.items() if k < level} | {level: heading.group(2)}
        elif line.strip().startswith("```"):
            flush()
            fence, start, block = line.strip(), number, []
            while not lines[number].strip().startswith("```"):
                block.append(lines[number])
                number += 1
            number += 1
            if fence == "```json":
                examples.append(Example(start, section(), "\n".join(block)))
        elif line.strip():
            paragraph.append((number, line))
        else:
            flush()
    flush()
    return examples


def json_values(text: str) -> list[Any]:
    """The JSON values of an example, one after another (a block may hold several frames)."""
    decoder, values, position = json.JSONDecoder(), [], 0
    while (position := len(text) - len(text[position:].lstrip())) < len(text):
        value, position = decoder.raw_decode(text, position)
        values.append(value)
    return values


EXAMPLES = protocol_examples(PROTOCOL_MD.read_text())
FRAME_EXAMPLES = [e for e in EXAMPLES if not e.http]
HTTP_EXAMPLES = [e for e in EXAMPLES if e.http]


def example_id(example: Example) -> str:
    kind = re.search(r'"type": "(\w+)"', example.text)
    return f"line{example.line}-{kind.group(1) if kind else 'frame'}"


@pytest.mark.parametrize("example", FRAME_EXAMPLES, ids=[example_id(e) for e in FRAME_EXAMPLES])
def test_protocol_md_examples_are_frames_of_the_document(example: Example) -> None:
    try:
        frames = json_values(example.text)
    except json.JSONDecodeError as exc:
        pytest.fail(f"docs/protocol.md line {example.line}: not JSON ({exc}): {example.text}")
    for frame in frames:
        assert isinstance(frame, dict), f"line {example.line}: a frame is a JSON object: {frame!r}"
        matches = conforming_messages(frame)
        assert len(matches) == 1, (
            f"docs/protocol.md line {example.line}: {frame} is no frame of docs/asyncapi.json: "
            + (
                "; ".join(
                    f"{key}: {error.message}"
                    for key in MESSAGES
                    if wire_type(key) == frame.get("type")
                    for error in validator(key).iter_errors(frame)
                )
                or "unknown type or field"
            )
        )


def test_http_bodies_in_protocol_md_are_left_to_the_openapi_document() -> None:
    """Examples under a heading that starts with "HTTP" are HTTP bodies, not validated here; none
    of them may be a WebSocket frame (one put there by mistake would go unchecked)."""
    assert HTTP_EXAMPLES, "the HTTP sections of docs/protocol.md have examples"
    for example in HTTP_EXAMPLES:
        try:
            values = json_values(example.text)
        except json.JSONDecodeError:
            continue  # a shape such as `{name, email, phoneNumber, password}`
        assert not [key for value in values if isinstance(value, dict) for key in conforming_messages(value)], example


def test_protocol_md_shows_every_frame() -> None:
    shown = {
        key for example in FRAME_EXAMPLES for frame in json_values(example.text) for key in conforming_messages(frame)
    }
    assert shown == set(MESSAGES), f"frames without an example in docs/protocol.md: {sorted(set(MESSAGES) - shown)}"


def test_protocol_md_lists_every_close_code_and_error_code() -> None:
    text = PROTOCOL_MD.read_text()
    table = text.split("### Close codes", 1)[1].split("\n#", 1)[0]
    listed = {int(code) for row in re.findall(r"^\| ([\d /]+) \|", table, re.MULTILINE) for code in row.split("/")}
    assert listed == {c["code"] for c in DOC["channels"]["ws"]["x-close-codes"]}
    server_frames = text.split("### Server → client", 1)[1].split("\n#", 1)[0]
    assert {code for code in WsErrorCode if f"`{code}`" in server_frames} == set(WsErrorCode)
