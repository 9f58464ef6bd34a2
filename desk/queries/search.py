"""Search over the tenant's messages and visitors (docs/architecture.md, "The console: search").

PostgreSQL full-text search with the 'simple' configuration (no stemming, the same in every language): the WHERE
clauses use models.MESSAGE_SEARCH_DOCUMENT and models.VISITOR_SEARCH_DOCUMENT verbatim, so the GIN indexes
ix_messages_body_fts and ix_visitors_search_fts serve them. The query is `websearch_to_tsquery` of what the agent
typed, with the last word as a prefix ("refu" finds "refund"); the agent's text only ever reaches PostgreSQL as a
bound parameter. Snippets come from `ts_headline` over the HTML-escaped body, are unescaped again here and handed
to the template as (text, highlighted) pieces: the template escapes every piece and adds `<mark>` itself, so
nothing from a message is ever trusted as HTML.

Chinese, Japanese and Korean: the 'simple' parser does not segment them, so "我想退款请帮忙" is one lexeme and
"退款" would not find it. A query with such characters is answered with ILIKE substring matches instead (every
term must occur), newest first, under a time limit; see MESSAGE_SEARCH_MS.

Encryption at rest (desk/crypto.py): PostgreSQL holds sealed message bodies and visitor names and emails, which no
SQL can search. With encryption on, messages are not searched at all and visitors are found by the start of their
user id (external_id, never sealed); `Results.sealed` says so and the page tells the agent (docs/operations.md,
"Encryption at rest").
"""

from __future__ import annotations

import html
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg.errors
from sqlalchemy import ColumnElement, Select, and_, case, cast, func, literal_column, or_, select, text
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from desk import crypto
from desk.models import (
    MESSAGE_SEARCH_DOCUMENT,
    VISITOR_SEARCH_DOCUMENT,
    Conversation,
    Message,
    Visitor,
)

MAX_CHARS = 200
LIMIT = 20
# Messages are searched row by row in the newest RECENT_SCAN, then through the full-text index in windows of the
# newest ids: FIRST_WINDOW, then WINDOW_GROWTH times more each time (see _newest_matches).
RECENT_SCAN = 500
FIRST_WINDOW = 20_000
WINDOW_GROWTH = 8
# Shorter last words are matched whole: "a:*" would expand to most of the index.
PREFIX_MIN_CHARS = 2
# At most this many terms of a CJK query become ILIKE conditions.
CJK_TERMS = 5
# The longest a search may spend on messages: a CJK query (which reads messages newest first until it has LIMIT
# hits, so the whole table for a rare term) or a rare word where the index cannot serve (see _newest_matches).
MESSAGE_SEARCH_MS = 2000
# A message up to this long is its own snippet; a longer one is cut to fragments around its hits.
WHOLE_CHARS = 240
# Characters around the first hit in a CJK snippet.
CJK_CONTEXT_CHARS = 40
SIMPLE = literal_column("'simple'::regconfig")
# Han, kana, Hangul (syllables and jamo), CJK punctuation and compatibility forms.
CJK = re.compile(r"[\u1100-\u11ff\u3000-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
WORD = re.compile(r"\w+")
# An email being typed: matched as a prefix of the whole email lexeme ("ada@exa" finds "ada@example.com").
EMAILISH = re.compile(r"[\w.+-]+@[\w.-]*")

Snippet = list[tuple[str, bool]]


class InvalidSearch(ValueError):
    """The search text cannot be searched for: the console answers 400 with `message`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Search:
    """What the agent typed, checked. Build with `parse`."""

    text: str

    @property
    def cjk(self) -> bool:
        return CJK.search(self.text) is not None

    @property
    def terms(self) -> list[str]:
        return self.text.split()[:CJK_TERMS]

    def tsquery(self) -> ColumnElement[object]:
        """websearch_to_tsquery of the text, its last word as a prefix when it is a plain word or an email."""
        head, _, last = self.text.rpartition(" ")
        head = head.strip()
        prefix = _prefix_query(last, head)
        if prefix is None:
            return func.websearch_to_tsquery(SIMPLE, self.text)
        if not head:
            return prefix
        return func.websearch_to_tsquery(SIMPLE, head).op("&&")(prefix)


def _prefix_query(last: str, head: str) -> ColumnElement[object] | None:
    if len(last) < PREFIX_MIN_CHARS or last.startswith("-") or last.lower() == "or":
        return None
    if (head + last).count('"') % 2 or head.lower().endswith(" or") or head.lower() == "or":
        return None  # inside a "quoted phrase", or after OR: leave websearch's meaning alone
    if WORD.fullmatch(last):
        # Only word characters, none of tsquery's operators: safe as to_tsquery input, normalised by 'simple'.
        return func.to_tsquery(SIMPLE, last + ":*")
    if EMAILISH.fullmatch(last):
        # One lexeme as the parser keeps an email; no quote or backslash can be in it.
        return cast("'" + last.lower() + "':*", TSQUERY)
    return None


def parse(raw: str | None) -> Search:
    text_ = " ".join((raw or "").split())
    if not text_:
        raise InvalidSearch("Type a word to search for.")
    if len(text_) > MAX_CHARS:
        raise InvalidSearch(f"Search for at most {MAX_CHARS} characters.")
    if "\x00" in text_:
        raise InvalidSearch("The search contains a character that cannot be searched for.")
    return Search(text_)


@dataclass(frozen=True)
class MessageHit:
    id: int
    conversation_id: uuid.UUID
    sender: str
    author_name: str | None
    created_at: datetime
    status: str
    visitor_id: uuid.UUID
    visitor_name: str | None
    visitor_email: str | None
    snippet: Snippet


@dataclass(frozen=True)
class VisitorHit:
    id: uuid.UUID
    name: str | None
    email: str | None
    external_id: str | None
    last_seen_at: datetime
    conversation_id: uuid.UUID | None  # the latest, None when the visitor never wrote
    snippet: Snippet


@dataclass(frozen=True)
class Results:
    search: Search
    messages: list[MessageHit]
    visitors: list[VisitorHit]
    timed_out: bool = False  # True: only the newest messages were searched, all of them took too long
    # True: encryption at rest is on, so messages were not searched and visitors only by their user id.
    sealed: bool = False


@dataclass(frozen=True)
class _Marks:
    """ts_headline's highlight markers: random per search, so no message text can forge one."""

    start: str
    stop: str

    @classmethod
    def new(cls) -> _Marks:
        return cls(f"[{secrets.token_hex(8)}[", f"]{secrets.token_hex(8)}]")

    def options(self, whole: bool) -> str:
        marks = f'StartSel="{self.start}", StopSel="{self.stop}", '
        if whole:
            return marks + "HighlightAll=true"
        return marks + 'MaxWords=24, MinWords=12, ShortWord=1, MaxFragments=2, FragmentDelimiter=" … "'

    def headline(self, document: ColumnElement[str], tsquery: ColumnElement[object]) -> ColumnElement[str]:
        """A text up to WHOLE_CHARS whole (ts_headline's fragments lose the words after the last hit), a longer
        one as at most two fragments around its hits."""
        escaped = _escaped(document)
        return case(
            (
                func.char_length(document) <= WHOLE_CHARS,
                func.ts_headline(SIMPLE, escaped, tsquery, self.options(whole=True)),
            ),
            else_=func.ts_headline(SIMPLE, escaped, tsquery, self.options(whole=False)),
        )

    def split(self, headline: str) -> Snippet:
        """The headline of an HTML-escaped text as (plain text, highlighted) pieces, unescaped again."""
        pieces: Snippet = []
        rest = headline
        while rest:
            start = rest.find(self.start)
            if start < 0:
                pieces.append((rest, False))
                break
            pieces.append((rest[:start], False))
            rest = rest[start + len(self.start) :]
            stop = rest.find(self.stop)
            if stop < 0:
                pieces.append((rest, True))
                break
            pieces.append((rest[:stop], True))
            rest = rest[stop + len(self.stop) :]
        return [(html.unescape(_squeeze(piece) if not hit else piece), hit) for piece, hit in pieces if piece]


def _squeeze(text_: str) -> str:
    """Runs of whitespace (newlines included) as one space: a snippet is one line."""
    return re.sub(r"\s+", " ", text_)


def _escaped(column: ColumnElement[str]) -> ColumnElement[str]:
    """&, < and > as entities before ts_headline: its parser drops what looks like a tag (`<b>`) and would show
    the agent a different text; entities come back unchanged and `_Marks.split` unescapes them."""
    amp = func.replace(column, "&", "&amp;")
    return func.replace(func.replace(amp, "<", "&lt;"), ">", "&gt;")


def matching_messages(search: Search, above: int | None) -> Select[tuple[int]]:
    """The ids of the newest LIMIT messages with id > `above` (None: all) that match, newest first."""
    where = [literal_column(MESSAGE_SEARCH_DOCUMENT).op("@@")(search.tsquery())]
    if above is not None:
        where.append(Message.id > above)
    return select(Message.id).where(*where).order_by(Message.id.desc()).limit(LIMIT)


def message_query(search: Search, marks: _Marks, ids: list[int]) -> Select[tuple[object, ...]]:
    """The messages `ids` with their conversation, visitor and a headline, newest first."""
    headline = marks.headline(Message.body, search.tsquery())
    return _message_columns(headline).where(Message.id.in_(ids)).order_by(Message.id.desc())


def _newest_matches(session: Session, search: Search) -> tuple[list[int], bool]:
    """Matching message ids, newest first, and whether every message was searched: the newest RECENT_SCAN
    messages row by row, then ever larger windows of the newest ids through the full-text index, for at most
    MESSAGE_SEARCH_MS (then the newest matches found so far are the answer).

    Through the index alone, a common word is slow: its bitmap holds every match, and keeping the newest 20 reads
    them all (1.1 s for a word in 10% of 1,000,000 messages). Row by row, a rare word is slow: to_tsvector() costs
    about 10-50 µs a row, and a word only in old messages means reading the whole table, which the planner (it
    thinks to_tsvector cheap) would happily do. So: a common word is answered by the first few hundred rows; any
    other word's bitmap is small, and the windows keep even those reads to the newest part of the table. Where the
    index cannot be used (row-level security, see docs/architecture.md), the windows are read row by row, and the
    time limit is what ends a search for a rare word.
    """
    deadline = time.monotonic() + MESSAGE_SEARCH_MS / 1000
    newest = session.scalar(text("SELECT max(id) FROM messages"))
    if newest is None:
        return [], True
    _planner(session, enable_bitmapscan="off", enable_seqscan="off")  # the primary key backwards, newest rows
    ids = list(session.scalars(matching_messages(search, newest - RECENT_SCAN)))
    complete = len(ids) >= LIMIT or newest <= RECENT_SCAN
    if not complete:
        before = session.scalar(text("SELECT current_setting('statement_timeout')"))
        _planner(session, enable_bitmapscan="on", enable_indexscan="off")  # the full-text index AND the id range
        window = FIRST_WINDOW
        while not complete:
            left_ms = int((deadline - time.monotonic()) * 1000)
            above = newest - window if window < newest else None
            try:
                with session.begin_nested():  # a timeout undoes this window only
                    _planner(session, statement_timeout=str(max(left_ms, 1)))
                    found = list(session.scalars(matching_messages(search, above)))
            except OperationalError as exc:
                if not _timed_out(exc):
                    raise
                break  # out of time: the newest matches found so far
            ids = found
            complete = len(ids) >= LIMIT or above is None
            window *= WINDOW_GROWTH
        _planner(session, statement_timeout=before)
    _planner(session, enable_bitmapscan="on", enable_indexscan="on", enable_seqscan="on")
    return ids, complete


def _timed_out(exc: OperationalError) -> bool:
    return isinstance(exc.orig, psycopg.errors.QueryCanceled)


def _planner(session: Session, **settings: str) -> None:
    """Settings until the end of the transaction (an error rolls them back with it), in one round trip."""
    calls = ", ".join(f"set_config('{name}', :{name}, true)" for name in settings)  # names are this module's
    session.execute(text("SELECT " + calls), settings)


def _message_columns(snippet: ColumnElement[str]) -> Select[tuple[object, ...]]:
    return (
        select(
            Message.id,
            Message.conversation_id,
            Message.sender,
            Message.author_name,
            Message.created_at,
            Conversation.status,
            Visitor.id,
            Visitor.name,
            Visitor.email,
            snippet,
        )
        .select_from(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(Visitor, Visitor.id == Message.visitor_id)
    )


def cjk_message_query(search: Search) -> Select[tuple[object, ...]]:
    """Messages containing every term as a substring, newest first: no index can serve this, so the scan walks
    the primary key backwards and stops at LIMIT hits (ILIKE costs far less a row than to_tsvector)."""
    contains = [Message.body.icontains(term, autoescape=True) for term in search.terms]
    matching = select(Message.id).where(and_(*contains)).order_by(Message.id.desc()).limit(LIMIT).subquery("matching")
    return _message_columns(Message.body).join(matching, matching.c.id == Message.id).order_by(Message.id.desc())


def _latest_conversation() -> ColumnElement[uuid.UUID]:
    return (
        select(Conversation.id)
        .where(Conversation.visitor_id == Visitor.id)
        .order_by(Conversation.last_activity_at.desc())
        .limit(1)
        .correlate(Visitor)
        .scalar_subquery()
    )


def _visitor_text() -> ColumnElement[str]:
    return func.concat_ws(" ", Visitor.name, Visitor.email)


def visitor_query(search: Search, marks: _Marks) -> Select[tuple[object, ...]]:
    """The most recently seen LIMIT visitors whose name, email or user id match (FTS), with their latest
    conversation and a headline of name and email."""
    tsquery = search.tsquery()
    matching = (
        select(Visitor.id)
        .where(literal_column(VISITOR_SEARCH_DOCUMENT).op("@@")(tsquery))
        .order_by(Visitor.last_seen_at.desc())
        .limit(LIMIT)
        .subquery("matching")
    )
    headline = marks.headline(_visitor_text(), tsquery)
    return _visitor_columns(headline).join(matching, matching.c.id == Visitor.id)


def cjk_visitor_query(search: Search) -> Select[tuple[object, ...]]:
    contains = [
        or_(Visitor.name.icontains(term, autoescape=True), Visitor.email.icontains(term, autoescape=True))
        for term in search.terms
    ]
    matching = select(Visitor.id).where(and_(*contains)).order_by(Visitor.last_seen_at.desc()).limit(LIMIT).subquery()
    return _visitor_columns(_visitor_text()).join(matching, matching.c.id == Visitor.id)


def _visitor_columns(snippet: ColumnElement[str]) -> Select[tuple[object, ...]]:
    return select(
        Visitor.id,
        Visitor.name,
        Visitor.email,
        Visitor.external_id,
        Visitor.last_seen_at,
        _latest_conversation(),
        snippet,
    ).order_by(Visitor.last_seen_at.desc())


def mark_terms(body: str, terms: list[str], context: int = CJK_CONTEXT_CHARS) -> Snippet:
    """A window of `body` around the first term found, every occurrence of a term highlighted."""
    pattern = re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)), re.IGNORECASE)
    first = pattern.search(body)
    if first is None:
        return [(body[: 2 * context], False)]
    begin = max(0, first.start() - context)
    end = min(len(body), first.end() + context)
    window = body[begin:end]
    pieces: Snippet = [("… ", False)] if begin else []
    last = 0
    for found in pattern.finditer(window):
        pieces += [(window[last : found.start()], False), (found.group(0), True)]
        last = found.end()
    pieces.append((window[last:], False))
    if end < len(body):
        pieces.append((" …", False))
    return [(_squeeze(t) if not hit else t, hit) for t, hit in pieces if t]


def search(session: Session, query: Search) -> Results:
    """Run both searches in a tenant_session: its scoping limits every table here to the tenant.

    Every statement is planned for its own values and the settings of the moment: psycopg prepares a statement
    run often, and PostgreSQL would then reuse one generic plan, made for some other word or window, and made
    under other enable_* settings (a plan does not follow them once cached): seconds instead of milliseconds.
    """
    _planner(session, plan_cache_mode="force_custom_plan")
    if crypto.keyring().on:
        return _search_sealed(session, query)
    if query.cjk:
        return _search_cjk(session, query)
    marks = _Marks.new()
    ids, complete = _newest_matches(session, query)
    rows = session.execute(message_query(query, marks, ids)) if ids else []
    messages = [MessageHit(*row[:9], snippet=marks.split(row[9])) for row in rows]
    visitors = [
        VisitorHit(*row[:6], snippet=marks.split(row[6])) for row in session.execute(visitor_query(query, marks))
    ]
    return Results(query, messages, visitors, timed_out=not complete)


def _search_cjk(session: Session, query: Search) -> Results:
    before = session.scalar(text("SELECT current_setting('statement_timeout')"))
    _planner(session, statement_timeout=str(MESSAGE_SEARCH_MS))
    try:
        rows = session.execute(cjk_message_query(query)).all()
    except OperationalError as exc:  # the timeout: say so, and still search visitors
        if not _timed_out(exc):
            raise
        session.rollback()
        _planner(session, plan_cache_mode="force_custom_plan")
        rows, timed_out = [], True
    else:
        _planner(session, statement_timeout=before)
        timed_out = False
    messages = [MessageHit(*row[:9], snippet=mark_terms(row[9], query.terms)) for row in rows]
    visitors = [
        VisitorHit(*row[:6], snippet=mark_terms(row[6], query.terms))
        for row in session.execute(cjk_visitor_query(query))
    ]
    return Results(query, messages, visitors, timed_out)


def sealed_visitor_query(search: Search) -> Select[tuple[object, ...]]:
    """Visitors whose user id starts with the search text, most recently seen first: all that can be searched
    when names and emails are sealed. The snippet is the user id."""
    matching = (
        select(Visitor.id)
        .where(Visitor.external_id.istartswith(search.text.strip(), autoescape=True))
        .order_by(Visitor.last_seen_at.desc())
        .limit(LIMIT)
        .subquery("matching")
    )
    return _visitor_columns(func.coalesce(Visitor.external_id, "")).join(matching, matching.c.id == Visitor.id)


def _search_sealed(session: Session, query: Search) -> Results:
    visitors = [
        VisitorHit(*row[:6], snippet=mark_terms(row[6], [query.text.strip()]))
        for row in session.execute(sealed_visitor_query(query))
    ]
    return Results(query, [], visitors, sealed=True)
