"""Memory quality on LoCoMo: recall@5 / recall@10 of evidence turns per category through
Rapport's own retrieval, next to a BM25 baseline over the same turns computed in the same run.

Each conversation goes into its own workspace through the API: one Rapport session per LoCoMo
session (both speakers members), each turn a message from its speaker with the session's date
(plus one second per turn) as ``created_at`` and its turn id in ``metadata.dia_id``; a shared
photo's caption is appended to the text as ``[shares a photo: …]``. The server runs with the
deriver (extractive reasoner, local ONNX embedder), and the bench waits until every message is
derived (embedded and indexed) before asking.

For each question of categories 1-4 (5, adversarial, is skipped as in LoCoMo's own retrieval
scoring), with the first speaker as the asker's perspective (both speakers witnessed every
turn, so this is the whole conversation):

* ``search``: ``POST /v3/workspaces/{w}/search`` (hybrid: vectors + BM25 full text, score-fused),
  ``limit`` 10, ``peer_perspective`` = first speaker; recall@k over the top k hits;
* ``dialectic``: ``POST /v3/workspaces/{w}/peers/{first speaker}/chat`` at reasoning level
  ``medium`` (10 evidence items, 2 rounds) with ``include_evidence``: the evidence's messages
  plus the source messages of its conclusions, as a set (no rank: reported as recall@evidence);
* ``bm25``: BM25 (k1 1.2, b 0.75) over "speaker: text" of the conversation's turns.

Evidence ids that are malformed or name no turn are dropped; a question left without evidence
is skipped.

    python -m bench.bench_locomo [--data /work/shared/data/locomo10.json] [--conversations 3]
        [--start 0] [--state FILE] [--dump FILE]

Evaluation loop (for retrieval work): ``--state FILE`` records each ingested conversation
(workspace and message id → turn id); a later run with the same ``--state`` reuses those
workspaces instead of ingesting again and only re-asks the questions (a change of how
messages are *indexed* needs a fresh ingest: use a new state file). ``--dump FILE`` writes one
JSON line per question (category, question, evidence, what each method returned) for the
analysis of misses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import common

DEFAULT_DATA = "/work/shared/data/locomo10.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


class BM25:
    """Okapi BM25 over a list of documents (k1 = 1.2, b = 0.75)."""

    def __init__(self, docs: list[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(tokens(d)) for d in docs]
        self.lengths = [sum(c.values()) for c in self.docs]
        self.avg = sum(self.lengths) / max(1, len(self.lengths))
        df: Counter[str] = Counter()
        for c in self.docs:
            df.update(c.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def top(self, query: str, k: int) -> list[int]:
        q = [t for t in set(tokens(query)) if t in self.idf]
        scores: list[tuple[float, int]] = []
        for i, (c, length) in enumerate(zip(self.docs, self.lengths, strict=True)):
            s = 0.0
            for t in q:
                f = c.get(t, 0)
                if f:
                    norm = (
                        f
                        * (self.k1 + 1)
                        / (f + self.k1 * (1 - self.b + self.b * length / self.avg))
                    )
                    s += self.idf[t] * norm
            if s > 0:
                scores.append((s, i))
        scores.sort(key=lambda x: (-x[0], x[1]))
        return [i for _, i in scores[:k]]


def parse_date(raw: str) -> datetime:
    """LoCoMo's "1:56 pm on 8 May, 2023" (taken as UTC)."""
    return datetime.strptime(raw.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")


def turn_text(turn: dict[str, Any]) -> str:
    text = str(turn.get("text", ""))
    if turn.get("blip_caption"):
        text += f" [shares a photo: {turn['blip_caption']}]"
    return text


def sessions_of(conv: dict[str, Any]) -> list[tuple[int, datetime, list[dict[str, Any]]]]:
    out = []
    for key, value in conv.items():
        m = re.fullmatch(r"session_(\d+)", key)
        if m and isinstance(value, list) and value:
            n = int(m.group(1))
            out.append((n, parse_date(conv[f"session_{n}_date_time"]), value))
    return sorted(out, key=lambda x: x[0])


def evidence_ids(qa: dict[str, Any], turns: set[str]) -> set[str]:
    ids: set[str] = set()
    for raw in qa.get("evidence", []):
        for part in re.split(r"[;,\s]+", str(raw)):
            if part in turns:
                ids.add(part)
    return ids


async def ingest(base: str, ws: str, sample: dict[str, Any]) -> dict[str, str]:
    """Ingest one conversation; return message id -> turn id."""
    conv = sample["conversation"]
    peers = {conv["speaker_a"]: slug(conv["speaker_a"]), conv["speaker_b"]: slug(conv["speaker_b"])}
    by_id: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        for n, date, turns in sessions_of(conv):
            session = f"session-{n}"
            await common.setup_session(http, ws, session, list(peers.values()))
            messages = [
                {
                    "peer_id": peers[t["speaker"]],
                    "content": turn_text(t),
                    "metadata": {"dia_id": t["dia_id"]},
                    "created_at": (date + timedelta(seconds=i)).isoformat(),
                }
                for i, t in enumerate(turns)
            ]
            for start in range(0, len(messages), 100):
                r = await http.post(
                    f"/v3/workspaces/{ws}/sessions/{session}/messages",
                    json={"messages": messages[start : start + 100]},
                )
                if r.status_code != 201:
                    raise RuntimeError(f"ingest: {r.status_code} {r.text}")
                for m in r.json():
                    by_id[m["id"]] = m["metadata"]["dia_id"]
    return by_id


async def wait_derived(dsn: str, ws: str, expected: int, limit_s: float) -> float:
    start = time.monotonic()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db:
        while True:
            row = await (
                await db.execute(
                    "SELECT count(*) FROM derivation_status WHERE workspace_id = %s "
                    "AND status = 'done'",
                    (ws,),
                )
            ).fetchone()
            done = int(row[0]) if row else 0
            if done >= expected:
                return time.monotonic() - start
            if time.monotonic() - start > limit_s:
                raise RuntimeError(f"{ws}: only {done}/{expected} derived after {limit_s} s")
            await asyncio.sleep(1)


def recall(found: list[str], gold: set[str], k: int) -> float:
    return len(gold & set(found[:k])) / len(gold)


async def main_async(args: argparse.Namespace) -> None:
    data = json.loads(Path(args.data).read_text())  # noqa: ASYNC240 - once, before any I/O
    samples = data[args.start : args.start + args.conversations]
    state_path = Path(args.state) if args.state else None
    state: dict[str, Any] = (
        json.loads(state_path.read_text()) if state_path and state_path.exists() else {}
    )
    dump = Path(args.dump).open("w") if args.dump else None  # noqa: SIM115, ASYNC230
    infra = common.infra_up()
    stamp = int(time.time())
    scores: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    per_conv: list[dict[str, Any]] = []
    latencies: dict[str, list[float]] = {"search": [], "dialectic": []}
    # A stream of its own: the deriver must not first work through the backlog of events the
    # other benches (deriver disabled) left in the bench profile's default stream.
    stream_env = {
        "RAPPORT_NATS_STREAM": f"BENCH_LOCOMO_{stamp}",
        "RAPPORT_NATS_SUBJECT_PREFIX": f"locomo{stamp}",
    }
    with common.server(infra, deriver=True, **stream_env) as base:
        for sample in samples:
            conv = sample["conversation"]
            known = state.get(sample["sample_id"])
            if known is not None:
                ws, by_id = known["ws"], known["by_id"]
                t_ingest = t_derive = 0.0
                print(f"{ws}: {len(by_id)} turns, reused (no ingest)")
            else:
                ws = f"locomo-{slug(sample['sample_id'])}-{stamp}"
                t0 = time.monotonic()
                by_id = await ingest(base, ws, sample)
                t_ingest = time.monotonic() - t0
                t_derive = await wait_derived(infra.dsn, ws, len(by_id), args.derive_timeout)
                print(f"{ws}: {len(by_id)} turns, ingest {t_ingest:.1f} s, derive {t_derive:.1f} s")
                if state_path is not None:
                    state[sample["sample_id"]] = {"ws": ws, "by_id": by_id}
                    state_path.write_text(json.dumps(state))
            turns = [t for _, _, ts in sessions_of(conv) for t in ts]
            turn_ids = {t["dia_id"] for t in turns}
            bm25 = BM25([f"{t['speaker']}: {turn_text(t)}" for t in turns])
            asker = slug(conv["speaker_a"])
            asked = 0
            if args.ingest_only:
                continue
            async with httpx.AsyncClient(base_url=base, timeout=120) as http:
                for qa in sample["qa"]:
                    cat = qa.get("category")
                    gold = evidence_ids(qa, turn_ids)
                    if cat not in CATEGORIES or not gold:
                        continue
                    asked += 1
                    q = qa["question"]
                    s = time.perf_counter()
                    r = await http.post(
                        f"/v3/workspaces/{ws}/search",
                        json={"query": q, "limit": 10, "peer_perspective": asker},
                    )
                    latencies["search"].append(time.perf_counter() - s)
                    r.raise_for_status()
                    hits = [by_id.get(m["id"], "") for m in r.json()]
                    s = time.perf_counter()
                    r = await http.post(
                        f"/v3/workspaces/{ws}/peers/{asker}/chat",
                        json={
                            "query": q,
                            "reasoning_level": "medium",
                            "include_evidence": True,
                        },
                    )
                    latencies["dialectic"].append(time.perf_counter() - s)
                    r.raise_for_status()
                    ev = r.json().get("evidence") or {}
                    ev_ids = {by_id.get(m["id"], "") for m in ev.get("messages", [])}
                    for c in ev.get("conclusions", []):
                        ev_ids.update(by_id.get(i, "") for i in c.get("source_ids", []))
                    base_hits = [turns[i]["dia_id"] for i in bm25.top(q, 10)]
                    for key, found in (("search", hits), ("bm25", base_hits)):
                        for k in (5, 10):
                            scores[f"{key}@{k}"][cat].append(recall(found, gold, k))
                    scores["dialectic@evidence"][cat].append(len(gold & ev_ids) / len(gold))
                    if dump is not None:
                        record = {
                            "sample_id": sample["sample_id"],
                            "category": CATEGORIES[cat],
                            "question": q,
                            "evidence": sorted(gold),
                            "search": hits,
                            "dialectic": sorted(ev_ids),
                            "bm25": base_hits,
                        }
                        dump.write(json.dumps(record) + "\n")
                        dump.flush()
                    scores["dialectic_evidence_items"][cat].append(float(len(ev_ids)))
            per_conv.append(
                {
                    "sample_id": sample["sample_id"],
                    "turns": len(by_id),
                    "questions": asked,
                    "ingest_s": round(t_ingest, 1),
                    "derive_s": round(t_derive, 1),
                }
            )
    if dump is not None:
        dump.close()
    if args.ingest_only:
        print(f"ingested: {per_conv}")
        return
    table: dict[str, dict[str, float]] = {}
    for metric, by_cat in scores.items():
        row = {CATEGORIES[c]: round(sum(v) / len(v), 3) for c, v in sorted(by_cat.items())}
        every = [x for v in by_cat.values() for x in v]
        row["all"] = round(sum(every) / len(every), 3)
        row["questions"] = len(every)
        table[metric] = row
    results = {
        "params": {
            "data": args.data,
            "conversations": [s["sample_id"] for s in samples],
            "asker_perspective": "speaker_a",
            "search": "POST /search limit 10 (hybrid)",
            "dialectic": "chat reasoning_level medium, include_evidence (set, no rank)",
            "baseline": "BM25 k1=1.2 b=0.75 over 'speaker: text'",
        },
        "conversations": per_conv,
        "recall": table,
        "ratio_search_at10_to_bm25_at10": round(
            table["search@10"]["all"] / table["bm25@10"]["all"], 3
        ),
        "latency_ms": {k: common.summary_ms(v) for k, v in latencies.items()},
    }
    common.write_results("locomo", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="path of locomo10.json")
    parser.add_argument(
        "--conversations", type=int, default=10, help="use the first N conversations"
    )
    parser.add_argument("--start", type=int, default=0, help="index of the first conversation")
    parser.add_argument("--state", help="JSON file of ingested conversations (reused if present)")
    parser.add_argument("--dump", help="write one JSON line per question to this file")
    parser.add_argument(
        "--ingest-only", action="store_true", help="ingest (into --state) and ask nothing"
    )
    parser.add_argument("--derive-timeout", type=float, default=900.0)
    common.run(lambda: main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
