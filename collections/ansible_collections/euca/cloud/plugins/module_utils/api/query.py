# -*- coding: utf-8 -*-
# Copyright: euca.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The EC2 Query protocol: form-encoded requests in, EC2-namespaced XML out.

A request is flat ``Name=value`` pairs (``Action``, ``Version``, ``InstanceId.1``,
``Filter.1.Name``, ``IpPermissions.1.IpRanges.1.CidrIp`` ...): ``parse_request`` reads them from
the query string and the form body, ``Params`` gives actions typed and structured access to
them (lists, nested structures, filters, tags) with EC2's refusals. A response is an XML
document ``<ActionResponse xmlns=...><requestId>..</requestId>...`` that botocore's
EC2QueryParser reads; ``render_response`` writes one from a plain dict, ``render_error``
writes EC2's error document. ``apply_filters`` and ``paginate`` are the Describe* actions'
shared semantics (EC2 filter matching with wildcards and tags; MaxResults/NextToken).

Standard library only: this runs on the clc host's /usr/bin/python3 without Ansible.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import datetime
import json
import re
import uuid
from urllib.parse import parse_qsl

from ansible_collections.euca.cloud.plugins.module_utils.api.errors import ApiError, invalid, missing

NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
_FORM = "application/x-www-form-urlencoded"


def new_request_id():
    """A fresh request id (EC2 uses UUIDs); it goes into the response and the server's log."""
    return str(uuid.uuid4())


# --- requests -----------------------------------------------------------------------------------

def _pairs(text, where):
    """``text`` (str or bytes, percent-encoded) as a dict; a key given twice is refused because
    EC2 parameters are single-valued (lists are ``Name.N``) and silently keeping one would hide a
    client bug."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("The request %s is not valid UTF-8" % where)
    out = {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise invalid("The request %s is not valid UTF-8 once percent-decoded" % where)
    for key, value in pairs:
        if key in out:
            raise invalid("The parameter %s is given more than once" % key)
        out[key] = value
    return out


def parse_request(method, query_string, body, content_type):
    """The request's flat parameters: the query string's, and for a POST the form-encoded
    body's (what botocore and the AWS CLI send), which win over the query string's.

    A POST body in any other content type is refused rather than ignored: its parameters (the
    Action among them) would otherwise vanish without a word. Other methods' bodies carry no
    parameters (HTTP gives a GET body no meaning).
    """
    params = _pairs(query_string or "", "query string")
    if body and method.upper() == "POST":
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media != _FORM:
            raise invalid("The request body must be %s (got %r)" % (_FORM, content_type or "no content type"))
        params.update(_pairs(body, "body"))
    return params


_INDEX = re.compile(r"\d+\Z")


class Params:
    """Read-only, typed view of a request's flat parameters (or of one structure inside them).

    Missing and empty are different: ``get`` returns ``""`` for ``Description=`` and the
    default only when the key is absent; ``required`` refuses both (EC2's MissingParameter).
    """

    __slots__ = ("_flat",)

    def __init__(self, flat):
        self._flat = dict(flat)

    def __repr__(self):
        return "Params(%r)" % (self._flat,)

    def names(self):
        """Every top-level key, for actions that refuse parameters they do not know."""
        return set(self._flat)

    def get(self, name, default=None, required=False):
        value = self._flat.get(name)
        if value is None or (required and value == ""):
            if required:
                raise missing(name)
            return default
        return value

    def int(self, name, default=None, required=False, minimum=None, maximum=None):
        value = self.get(name, required=required)
        if value is None:
            return default
        text = value.strip()
        if not re.match(r"[-+]?\d+\Z", text):
            raise invalid("Value (%s) for parameter %s is invalid. Expected an integer." % (value, name))
        number = int(text)
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            if minimum is not None and maximum is not None:
                bound = "Expected a value between %d and %d." % (minimum, maximum)
            elif minimum is not None:
                bound = "Expected a value of at least %d." % minimum
            else:
                bound = "Expected a value of at most %d." % maximum
            raise invalid("Value (%s) for parameter %s is invalid. %s" % (value, name, bound))
        return number

    def bool(self, name, default=False):
        value = self._flat.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
        raise invalid("Value (%s) for parameter %s is invalid. Expected 'true' or 'false'." % (value, name))

    def _indexed(self, prefix):
        """``{N: {rest: value}}`` for keys ``prefix.N`` (rest ``""``) and ``prefix.N.rest``."""
        lead = prefix + "."
        cut = len(lead)
        groups = {}
        seen = {}
        for key, value in self._flat.items():
            if not key.startswith(lead):
                continue
            index, _sep, rest = key[cut:].partition(".")
            if not _INDEX.match(index):
                continue
            number = int(index)
            # "Name.1" and "Name.01" are the same member: refuse rather than pick one.
            if seen.setdefault((number, rest), index) != index:
                raise invalid("The parameter %s.%s is given more than once (as %s%s)" % (prefix, number, lead, index))
            groups.setdefault(number, {})[rest] = value
        return groups

    def list(self, prefix):
        """The values of ``prefix.1``, ``prefix.2``, ... in numeric order (EC2 allows gaps); a
        bare ``prefix`` counts as a one-element list when no ``prefix.N`` is given."""
        groups = self._indexed(prefix)
        values = [groups[n][""] for n in sorted(groups) if "" in groups[n]]
        if not values and prefix in self._flat:
            return [self._flat[prefix]]
        return values

    def _structs(self, prefix):
        groups = self._indexed(prefix)
        out = []
        for number in sorted(groups):
            fields = {rest: value for rest, value in groups[number].items() if rest}
            if fields:
                out.append((number, Params(fields)))
        return out

    def structs(self, prefix):
        """One ``Params`` per ``prefix.N`` structure (keys ``prefix.N.Rest`` become ``Rest``), in
        numeric order; they nest (``IpPermissions.1.IpRanges.1.CidrIp``)."""
        return [sub for _index, sub in self._structs(prefix)]

    def filters(self):
        """``[(name, [values])]`` from ``Filter.N.Name`` and ``Filter.N.Value.M``."""
        out = []
        for number, sub in self._structs("Filter"):
            name = sub.get("Name")
            if not name:
                raise invalid("The filter Filter.%d has no Name" % number)
            values = sub.list("Value")
            if not values:
                raise invalid("The filter '%s' requires a value" % name)
            out.append((name, values))
        return out

    def tags(self, prefix="Tag"):
        """``[(key, value)]`` from ``prefix.N.Key`` / ``prefix.N.Value`` (value defaults to "")."""
        out = []
        for number, sub in self._structs(prefix):
            key = sub.get("Key")
            if not key:
                raise missing("%s.%d.Key" % (prefix, number))
            out.append((key, sub.get("Value", "")))
        return out

    def tag_specifications(self):
        """``[(resource_type, [(key, value)])]`` from ``TagSpecification.N.ResourceType`` and
        ``TagSpecification.N.Tag.M.Key/Value``."""
        out = []
        for number, sub in self._structs("TagSpecification"):
            resource_type = sub.get("ResourceType")
            if not resource_type:
                raise missing("TagSpecification.%d.ResourceType" % number)
            out.append((resource_type, sub.tags("Tag")))
        return out


# --- responses ----------------------------------------------------------------------------------

# Characters XML 1.0 cannot carry at all (C0 controls but tab/LF/CR, lone surrogates, U+FFFE/F):
# they are dropped. "&", "<", ">" are escaped; CR as &#13; so a parser's newline normalization
# does not turn it into LF.
_UNSAFE = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_DROP = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


_unsafe = _UNSAFE.search


def _escape(text):
    if _unsafe(text) is None:
        return text
    return _DROP.sub("", text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


class _Tags(dict):
    """Element name -> (opening tag, closing tag), each name checked once and then cached
    (element names come from the actions' code, never from a client)."""

    def __missing__(self, name):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError("not an XML element name: %r" % (name,))
        pair = self[name] = ("<%s>" % name, "</%s>" % name)
        return pair


_TAGS = _Tags()


def _timestamp(value):
    """EC2's timestamp form (launchTime, startTime): UTC, milliseconds, ``Z``."""
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (value.microsecond // 1000)


def _scalar(value):
    """The text of a scalar: str escaped, bool as EC2's true/false, numbers, datetimes."""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, datetime.datetime):
        return _timestamp(value)
    raise TypeError("cannot render %s in an EC2 response: %r" % (type(value).__name__, value))


_ITEM_OPEN, _ITEM_CLOSE = "<item>", "</item>"
_BETWEEN_ITEMS = _ITEM_CLOSE + _ITEM_OPEN


class Raw(str):
    """XML already rendered (by ``Template.render`` or ``fragment``): ``_render`` appends it as it is."""

    __slots__ = ()


def _render(out, body):
    """Append the elements of dict ``body`` to the list ``out``.

    Written for speed (a DescribeInstances of thousands of instances): one list of string
    pieces joined once, exact-type dispatch, cached tags, escaping only when a string needs it.
    """
    append = out.append
    for name, value in body.items():
        if value is None:
            continue
        kind = type(value)
        opening, closing = _TAGS[name]
        if kind is str:
            append(opening)
            append(value if _unsafe(value) is None else _escape(value))
            append(closing)
        elif kind is Raw:
            append(opening)
            append(value)
            append(closing)
        elif kind is dict:
            append(opening)
            _render(out, value)
            append(closing)
        elif kind is list or kind is tuple:
            append(opening)
            for entry in value:
                if isinstance(entry, Raw):
                    append(_ITEM_OPEN)
                    append(entry)
                    append(_ITEM_CLOSE)
                elif isinstance(entry, dict):
                    append(_ITEM_OPEN)
                    _render(out, entry)
                    append(_ITEM_CLOSE)
                elif entry is not None:
                    append(_ITEM_OPEN)
                    append(_scalar(entry))
                    append(_ITEM_CLOSE)
            append(closing)
        elif isinstance(value, dict):
            append(opening)
            _render(out, value)
            append(closing)
        else:
            append(opening)
            append(_scalar(value))
            append(closing)


def fragment(body):
    """The elements of dict ``body`` rendered once (as ``render_response`` would), to be placed as
    they are wherever a value of a body may be: a ``Raw``."""
    out = []
    _render(out, body)
    return Raw("".join(out))


class Slot:
    """A value a ``Template`` takes at each ``render``: ``Slot("name")`` in a template's body holds
    any value a body may (None omits the element)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


class Text(Slot):
    """A slot whose value is always a str (escaped; never None, so its element is always there):
    its tags are part of the template's constant text."""

    __slots__ = ()


class Xml(Slot):
    """A slot whose value is always ``Raw`` XML (placed as it is, inside its element)."""

    __slots__ = ()


class Template:
    """The elements of a body whose shape is fixed and only some values vary, compiled once.

    ``Template({"a": Text("a"), "b": {"c": "constant", "d": Slot("d")}, "e": [{"f": Text("f")}]})``
    renders the constant parts once; each ``render(values)`` then renders only the slots' values
    (``values[name]``) into their places and joins the pieces. A ``Slot`` takes any value a body may
    hold (None omits its element, as ``_render`` does); ``Text`` and ``Xml`` slots are always there,
    so their tags are constant, and the ``Text`` values of one render are checked for characters
    to escape in one pass. Slots may sit in nested dicts and in the dicts of a list of a fixed
    number of entries (an instance's one network interface); a name may be used in more than one
    place. The answer is exactly what ``_render`` makes of the body with the values in place; it is
    only faster (a DescribeInstances page of 1000 items).
    """

    __slots__ = ("_pieces", "_texts", "_text_at", "_xml_at", "_slot_at")

    def __init__(self, body):
        pieces, texts, text_at, xml_at, slot_at = [], [], [], [], []
        self._compile(body, pieces, texts, text_at, xml_at, slot_at)
        kinds = {}
        for name, kind in [(n, Text) for n in texts] + [(n, Xml) for _p, n in xml_at] + [(n, Slot) for _p, n, _e in slot_at]:
            if kinds.setdefault(name, kind) is not kind:
                raise ValueError("the template's slot %s is used as two kinds of slot" % name)
        # adjacent constants merged: fewer pieces to join at each render
        merged, moved = [], {}
        for index, piece in enumerate(pieces):
            if piece is not None and merged and merged[-1] is not None:
                merged[-1] += piece
            else:
                moved[index] = len(merged)
                merged.append(piece)
        self._pieces = tuple(merged)
        self._texts = tuple(texts)
        self._text_at = tuple((moved[p], i) for p, i in text_at)
        self._xml_at = tuple((moved[p], n) for p, n in xml_at)
        # each slot's element with its tags, looked up once
        self._slot_at = tuple((moved[p], n, e) + _TAGS[e] for p, n, e in slot_at)

    @classmethod
    def _compile(cls, body, pieces, texts, text_at, xml_at, slot_at):
        for element, value in body.items():
            if isinstance(value, Slot):
                opening, closing = _TAGS[element]
                if isinstance(value, Text):
                    if value.name not in texts:
                        texts.append(value.name)
                    pieces.append(opening)
                    text_at.append((len(pieces), texts.index(value.name)))
                    pieces.extend((None, closing))
                elif isinstance(value, Xml):
                    pieces.append(opening)
                    xml_at.append((len(pieces), value.name))
                    pieces.extend((None, closing))
                else:
                    slot_at.append((len(pieces), value.name, element))
                    pieces.append(None)
            elif isinstance(value, dict) and cls._slotted(value):
                opening, closing = _TAGS[element]
                pieces.append(opening)
                cls._compile(value, pieces, texts, text_at, xml_at, slot_at)
                pieces.append(closing)
            elif isinstance(value, list) and any(isinstance(e, dict) and cls._slotted(e) for e in value):
                opening, closing = _TAGS[element]
                pieces.append(opening)
                for entry in value:
                    if not isinstance(entry, dict):
                        raise TypeError("a template's list of slotted items holds dicts only: %r" % (entry,))
                    pieces.append(_ITEM_OPEN)
                    cls._compile(entry, pieces, texts, text_at, xml_at, slot_at)
                    pieces.append(_ITEM_CLOSE)
                pieces.append(closing)
            else:
                constant = []
                _render(constant, {element: value})
                pieces.append("".join(constant))

    @classmethod
    def _slotted(cls, body):
        return any(isinstance(v, Slot) or (isinstance(v, dict) and cls._slotted(v))
                   or (isinstance(v, list) and any(isinstance(e, dict) and cls._slotted(e) for e in v))
                   for v in body.values())

    def render(self, values):
        """``Raw`` XML of the body with ``values`` in its slots."""
        out = list(self._pieces)
        texts = [values[name] for name in self._texts]
        try:
            joined = "".join(texts)
        except TypeError:
            raise TypeError("a Text slot's value is not a str: %r" % (dict(zip(self._texts, texts)),))
        # isprintable() is False for every character XML cannot carry (and for some it can: those
        # take the slow path, which is as correct)
        if not joined.isprintable() or "&" in joined or "<" in joined or ">" in joined:
            texts = [_escape(text) for text in texts]
        for position, index in self._text_at:
            out[position] = texts[index]
        for position, name in self._xml_at:
            value = out[position] = values[name]
            if not isinstance(value, Raw):
                raise TypeError("the Xml slot %s's value is not Raw: %r" % (name, value))
        for position, name, element, opening, closing in self._slot_at:
            value = values[name]
            if value is None:
                out[position] = ""
                continue
            kind = type(value)
            if kind is str:
                out[position] = opening + (value if _unsafe(value) is None else _escape(value)) + closing
            elif kind is list and not value:
                out[position] = opening + closing
            elif kind is list and all(isinstance(entry, Raw) for entry in value):
                # one join: a reservation's instancesSet of 1000 items is megabytes
                out[position] = "".join((opening, _ITEM_OPEN, _BETWEEN_ITEMS.join(value), _ITEM_CLOSE, closing))
            else:
                rendered = []
                _render(rendered, {element: value})
                out[position] = "".join(rendered)
        return Raw("".join(out))


def render_response(action, request_id, body):
    """``<{action}Response xmlns=EC2><requestId>..</requestId>{body}</{action}Response>`` as
    UTF-8 bytes. ``body`` renders in insertion order: dict -> child elements, list/tuple -> one
    ``<item>`` per entry, bool -> true/false, None -> omitted, datetime -> EC2's timestamp."""
    opening, closing = _TAGS[action + "Response"]
    out = [_XML_DECL, opening[:-1], ' xmlns="', NAMESPACE, '"><requestId>', _escape(request_id), "</requestId>"]
    _render(out, body or {})
    out.append(closing)
    return "".join(out).encode("utf-8")


def render_query_response(action, request_id, body, namespace):
    """The AWS Query protocol's answer (STS, IAM): ``<{action}Response xmlns=namespace>
    <{action}Result>{body}</{action}Result><ResponseMetadata><RequestId>..`` as UTF-8 bytes."""
    opening, closing = _TAGS[action + "Response"]
    result_open, result_close = _TAGS[action + "Result"]
    out = [_XML_DECL, opening[:-1], ' xmlns="', _escape(namespace), '">', result_open]
    _render(out, body or {})
    out.extend((result_close, "<ResponseMetadata><RequestId>", _escape(request_id), "</RequestId></ResponseMetadata>",
                closing))
    return "".join(out).encode("utf-8")


def render_error(code, message, request_id):
    """EC2's error document, the shape botocore's EC2QueryParser reads (``Errors/Error/Code``,
    ``Message`` and ``RequestID``, spelled so, not ``RequestId``)."""
    return "".join((
        _XML_DECL, "<Response><Errors><Error><Code>", _escape(code), "</Code><Message>", _escape(message),
        "</Message></Error></Errors><RequestID>", _escape(request_id), "</RequestID></Response>",
    )).encode("utf-8")


# --- Describe* semantics ------------------------------------------------------------------------

def _pattern(value):
    """A matcher for one filter value: EC2 wildcards ``*`` (any run) and ``?`` (one character),
    backslash escaping either (or a backslash); without wildcards a plain string compare."""
    if "*" not in value and "?" not in value and "\\" not in value:
        return value.__eq__
    parts = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            parts.append(re.escape(next(chars, "\\")))
        elif char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL).fullmatch


def _text(value):
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value if isinstance(value, str) else str(value)


def _tag_getter(name):
    """The values filter ``tag:KEY`` / ``tag-key`` / ``tag-value`` sees in an item's tagSet."""
    if name == "tag-key":
        return lambda item: [tag.get("key") for tag in item.get("tagSet") or ()]
    if name == "tag-value":
        return lambda item: [tag.get("value", "") for tag in item.get("tagSet") or ()]
    key = name[4:]
    return lambda item: [tag.get("value", "") for tag in item.get("tagSet") or () if tag.get("key") == key]


def apply_filters(items, filters, fields):
    """The items every filter matches. ``filters`` is ``Params.filters()``; ``fields`` maps a
    filter name to ``item -> value | [values] | None``. A filter matches an item when any of
    its values matches any of the item's (EC2: values OR, filters AND). ``tag:KEY``,
    ``tag-key`` and ``tag-value`` read the item's ``tagSet`` unless ``fields`` names them."""
    compiled = []
    for name, values in filters:
        getter = fields.get(name)
        if getter is None:
            if (name.startswith("tag:") and len(name) > 4) or name in ("tag-key", "tag-value"):
                getter = _tag_getter(name)
            else:
                raise invalid("The filter '%s' is invalid" % name)
        compiled.append((getter, [_pattern(v) for v in values]))
    if not compiled:
        return list(items)
    out = []
    for item in items:
        for getter, matchers in compiled:
            got = getter(item)
            if got is None:
                break
            if not isinstance(got, (list, tuple, set, frozenset)):
                got = (got,)
            texts = [_text(v) for v in got if v is not None]
            if not any(match(text) for match in matchers for text in texts):
                break
        else:
            out.append(item)
    return out


def _token(offset):
    raw = json.dumps({"o": offset}, separators=(",", ":")).encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _offset(token):
    bad = invalid("Invalid NextToken value: %s" % token)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad
    offset = data.get("o") if isinstance(data, dict) else None
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise bad
    return offset


def page_window(max_results, next_token, minimum=5, maximum=1000):
    """``(offset, limit or None)`` that ``max_results`` and ``next_token`` ask for, checked as
    EC2 checks them: a caller that pages in its query (SQL ``LIMIT``/``OFFSET``) and then asks
    ``page_token`` for the token of the next page."""
    start = _offset(next_token) if next_token else 0
    if max_results is None:
        return start, None
    if isinstance(max_results, bool) or not isinstance(max_results, int):
        try:
            max_results = int(max_results)
        except (TypeError, ValueError):
            raise invalid("Value ( %s ) for parameter maxResults is invalid. Expected an integer." % (max_results,))
    if not minimum <= max_results <= maximum:
        raise ApiError("InvalidParameterValue", "Value ( %d ) for parameter maxResults is invalid. "
                       "Expecting a value between %d and %d." % (max_results, minimum, maximum))
    return start, max_results


def page_token(offset, limit, more):
    """The NextToken after a page of ``limit`` items from ``offset``, when ``more`` items follow."""
    return _token(offset + limit) if limit is not None and more else None


def paginate(items, max_results, next_token, minimum=5, maximum=1000):
    """``(page, next_token or None)``. Without ``max_results`` everything (from the token's
    offset, if one is given) and no token. The token is opaque to clients: urlsafe base64 of
    ``{"o": offset}``; one that does not decode to that is refused."""
    items = list(items)
    start, limit = page_window(max_results, next_token, minimum, maximum)
    if limit is None:
        return items[start:], None
    end = start + limit
    return items[start:end], page_token(start, limit, end < len(items))
