"""Generate realistic synthetic event logs for the eligibility filter.

The output is an event log as SPEC.md describes it: one JSON object per line in
the envelope that ``kcat -C -J`` prints::

    {"topic":"posts","partition":1,"offset":42,"key":"acct-7","payload":"{\"event_id\":...}"}

* ``topic`` is one of ``posts``, ``objections``, ``accounts`` (and, for a rare
  malformed line, a topic that is none of them).
* ``key`` is the account id; ``partition`` is ``zlib.crc32(key_utf8) % 3``.
  This is a stable hash, but it is NOT Kafka's default partitioner (murmur2):
  a log replayed into a real 3-partition topic by key will land differently.
* ``offset`` starts at 0 and increases by one per (topic, partition).
* ``payload`` is the message value as a JSON string (``null`` for a tombstone).

The same ``seed`` always gives the same bytes. Mix by event count (roughly):
post.created ~79%, post.updated ~8%, post.deleted ~4.5%, account.upserted ~5%,
objection.filed ~0.5%, objection.withdrawn ~0.2%, account.deleted ~0.1%,
redeliveries ~1% (byte-identical key and payload of an earlier event, at a new
offset, as a producer retry writes it) and malformed messages ~1%.

Usage::

    python -m stream.synthetic --events 1000000 --seed 1 --out /tmp/log.jsonl

or from Python: ``generate(events, seed)`` yields the lines (bytes, no newline),
``generate_labeled(events, seed)`` yields ``(label, line)`` pairs (the label
says what the line is: an event type, ``redelivery`` or ``malformed:<kind>``),
``write_log(path, events, seed)`` writes a file.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson

__all__ = ["MALFORMED_KINDS", "generate", "generate_labeled", "partition_for", "write_log"]

PARTITIONS = 3
START_MS = 1_748_736_000_000  # 2025-06-01T00:00:00Z in milliseconds since the epoch
MEAN_STEP_MS = 600  # mean time between two events
P_REDELIVERY = 0.01
P_MALFORMED = 0.01
P_OUT_OF_ORDER = 0.005  # an event whose ts lies up to 5 minutes in the past

MALFORMED_KINDS = (
    "invalid_json",
    "lone_surrogate",
    "nan",
    "bom",
    "duplicate_key",
    "missing_field",
    "bad_enum",
    "wrong_type",
    "unknown_type",
    "bad_time",
    "key_mismatch",
    "tombstone",
    "not_object",
    "id_too_long",
    "unknown_topic",
)


def partition_for(key: str) -> int:
    """The partition of a key: CRC-32 of its UTF-8 bytes mod 3 (not murmur2)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % PARTITIONS


# --------------------------------------------------------------------------- text

_WORDS: dict[str, str] = {
    "en": "the morning coffee with friends today weekend trip beach city great new "
    "photo family dinner happy birthday summer rain again work finally home game "
    "match team win love this view amazing recipe garden dog cat walk park music "
    "concert tonight book reading sunset mountains holiday thanks everyone",
    "de": "heute Morgen Kaffee mit Freunden Wochenende Ausflug Strand Stadt schön neue "
    "Fotos Familie Abendessen Geburtstag Sommer Regen wieder Arbeit endlich zu Hause "
    "Spiel Mannschaft gewonnen Aussicht Rezept Garten Hund Katze Spaziergang Konzert "
    "Brötchen Bäckerei Grüße aus München Köln Straße fünf Tage Überraschung für alle",
    "fr": "aujourd'hui matin café avec les amis week-end voyage plage ville belle nouvelle "
    "photo famille dîner anniversaire été pluie encore travail enfin maison match "
    "équipe gagné vue recette jardin chien chat promenade concert ce soir très "
    "déjà là-bas crêpes boulangerie été magnifique à Paris Lyon Marseille merci à tous",
    "it": "oggi mattina caffè con gli amici fine settimana viaggio spiaggia città bella "
    "nuova foto famiglia cena compleanno estate pioggia ancora lavoro finalmente casa "
    "partita squadra vinto vista ricetta giardino cane gatto passeggiata concerto "
    "stasera perché così più già città Roma Milano Napoli grazie a tutti",
    "es": "hoy mañana café con amigos fin de semana viaje playa ciudad bonita nueva foto "
    "familia cena cumpleaños verano lluvia otra vez trabajo por fin casa partido "
    "equipo ganamos vista receta jardín perro gato paseo concierto esta noche "
    "también qué año España Madrid Sevilla niños corazón gracias a todos",
    "pl": "dzisiaj rano kawa ze znajomymi weekend wycieczka plaża miasto piękne nowe "
    "zdjęcia rodzina kolacja urodziny lato deszcz znowu praca wreszcie dom mecz "
    "drużyna wygrała widok przepis ogród pies kot spacer koncert wieczorem już "
    "Kraków Warszawa Gdańsk źródło łąka żółty gęś dziękuję wszystkim",
    "nl": "vandaag ochtend koffie met vrienden weekend uitje strand stad mooie nieuwe "
    "foto familie diner verjaardag zomer regen weer werk eindelijk thuis wedstrijd "
    "team gewonnen uitzicht recept tuin hond kat wandeling concert vanavond "
    "Amsterdam Utrecht fiets gezellig lekker bedankt allemaal",
    "sv": "idag morgon kaffe med vänner helgen resa strand staden vacker nya bilder "
    "familj middag födelsedag sommar regn igen jobbet äntligen hemma match laget "
    "vann utsikt recept trädgård hund katt promenad konsert ikväll fika Göteborg "
    "Malmö smörgås tack alla",
    "pt": "hoje manhã café com amigos fim de semana viagem praia cidade linda nova foto "
    "família jantar aniversário verão chuva outra vez trabalho finalmente casa jogo "
    "time ganhou vista receita jardim cachorro gato passeio show hoje à noite "
    "São Paulo Lisboa coração saudade obrigado a todos",
    "el": "σήμερα πρωί καφές με φίλους Σαββατοκύριακο ταξίδι παραλία πόλη όμορφη νέα "
    "φωτογραφία οικογένεια δείπνο γενέθλια καλοκαίρι βροχή ξανά δουλειά επιτέλους "
    "σπίτι αγώνας ομάδα νίκη θέα συνταγή κήπος σκύλος γάτα Αθήνα ευχαριστώ",
    "hi": "आज सुबह चाय दोस्तों के साथ सप्ताहांत यात्रा समुद्र शहर सुंदर नई तस्वीर परिवार "
    "खाना जन्मदिन गर्मी बारिश फिर काम आखिरकार घर मैच टीम जीत नज़ारा रेसिपी बगीचा "
    "कुत्ता बिल्ली धन्यवाद",
}
_CJK: dict[str, str] = {
    "ja": "今日 朝 コーヒー 友達 と 週末 旅行 海 街 きれい 新しい 写真 家族 晩ご飯 誕生日 "
    "夏 雨 また 仕事 やっと 家 試合 チーム 勝った 景色 レシピ 庭 犬 猫 散歩 東京 大阪 "
    "ありがとう",
    "zh": "今天 早上 咖啡 和 朋友 周末 旅行 海边 城市 漂亮 新的 照片 家人 晚饭 生日 夏天 "
    "下雨 又 工作 终于 回家 比赛 球队 赢了 风景 菜谱 花园 狗 猫 散步 北京 上海 谢谢",
}
_EMOJI = (
    "😀", "😂", "😍", "🥰", "😎", "🙏", "👍", "👏", "🎉", "🔥", "❤️", "💙", "🌞", "🌧️",
    "🍕", "🍝", "🥐", "☕", "🍺", "⚽", "🏖️", "🏔️", "🐶", "🐱", "🌸", "📸", "✈️", "🚲",
    "🎶", "😅", "🤔", "🙌", "💯", "✨", "🇩🇪", "🇫🇷", "🇮🇹", "🇪🇸", "🇵🇱", "🇪🇺",
    "👩\u200d👩\u200d👧", "👍🏽", "🤷\u200d♀️",
)  # fmt: skip
# Rare texts that stress JSON escaping and "carried unchanged": U+2028/U+2029,
# quotes, backslashes, control characters, combining marks, astral characters,
# leading/trailing white space.
_SPECIAL: tuple[Callable[[str], str], ...] = (
    lambda t: t[: len(t) // 2] + "\u2028" + t[len(t) // 2 :],
    lambda t: t + "\u2029" + "ok",
    lambda t: 'she said "' + t + '" and left',
    lambda t: t + " C:\\Users\\me\\Desktop\\new\\folder \\u0041 \\n",
    lambda t: t.replace(" ", "\n", 2),
    lambda t: t + "\r\n\tend",
    lambda t: "Cafe\u0301 cre\u0300me bru\u0302le\u0301e \u2014 " + t,  # NFD, not normalised
    lambda t: t + " \U00020b9f\U0001d11e\U0001f9d1\u200d\U0001f4bb",
    lambda t: "  " + t + "  ",
    lambda t: t + " \x00\x07\x1f \u200b\ufeff\u00ad",
    lambda t: t + ' </script><b>&amp;</b> {"json": [1, 2]} \'',
)

_LANG_CODES: dict[str, tuple[str, ...]] = {
    "en": ("en", "en", "en", "en-GB", "en-US"),
    "de": ("de", "de", "de", "de-DE", "de-AT"),
    "fr": ("fr", "fr", "fr", "fr-FR", "fr-BE"),
    "it": ("it",),
    "es": ("es", "es", "es-ES"),
    "pl": ("pl",),
    "nl": ("nl", "nl", "nl-BE"),
    "sv": ("sv",),
    "pt": ("pt", "pt-PT", "pt-BR"),
    "el": ("el",),
    "hi": ("hi",),
    "ja": ("ja",),
    "zh": ("zh", "zh-Hans", "zh-CN"),
}

# --------------------------------------------------------------------------- people

_IN_REGION = {  # EU 27 + IS, LI, NO, with rough population-of-users weights
    "DE": 18, "FR": 14, "IT": 12, "ES": 10, "PL": 8, "NL": 5, "RO": 3, "BE": 3,
    "AT": 2.5, "SE": 2.5, "PT": 2.5, "CZ": 2, "GR": 2, "HU": 1.5, "DK": 1, "FI": 1,
    "IE": 1, "SK": 0.8, "BG": 0.8, "HR": 0.6, "NO": 0.6, "LT": 0.5, "SI": 0.3,
    "LV": 0.3, "EE": 0.2, "CY": 0.1, "LU": 0.1, "MT": 0.1, "IS": 0.05, "LI": 0.02,
}  # fmt: skip
_OUT_OF_REGION = {
    "US": 5, "GB": 3, "BR": 2.5, "IN": 2, "CH": 1, "TR": 0.7, "UA": 0.5, "JP": 0.3,
    "CA": 0.3, "MX": 0.3,
}  # fmt: skip
_COUNTRY_LANG = {
    "DE": "de", "AT": "de", "LI": "de", "CH": "de", "FR": "fr", "BE": "fr", "LU": "fr",
    "IT": "it", "ES": "es", "MX": "es", "PL": "pl", "NL": "nl", "SE": "sv", "PT": "pt",
    "BR": "pt", "GR": "el", "CY": "el", "IN": "hi", "JP": "ja",
}  # fmt: skip
_CHANNELS = ("email", "email", "in_app", "in_app", "in_app", "web_form")


def _weighted(table: dict[str, float]) -> tuple[list[str], list[float]]:
    keys = list(table)
    acc, cum = 0.0, []
    for k in keys:
        acc += table[k]
        cum.append(acc)
    return keys, cum


class _Account:
    __slots__ = (
        "birth",
        "country",
        "deleted",
        "id",
        "lang",
        "profile_ts",
        "surface",
    )

    def __init__(self, aid: str, birth: str | None, country: str | None, lang: str, surface: str):
        self.id = aid
        self.birth = birth
        self.country = country
        self.lang = lang
        self.surface = surface
        self.deleted = False
        self.profile_ts = -1  # ms of the last profile emitted, -1 if none


class _Post:
    __slots__ = ("acct", "audience", "created_at", "id", "kind", "last_ms", "surface")

    def __init__(
        self, *, pid: str, acct: _Account, created_at: str, kind: str, audience: str,
        surface: str | None, last_ms: int,
    ) -> None:  # fmt: skip
        self.id = pid
        self.acct = acct
        self.created_at = created_at
        self.kind = kind
        self.audience = audience
        self.surface = surface
        self.last_ms = last_ms


_ORD_2025_06_01 = date(2025, 6, 1).toordinal()


class _Generator:
    def __init__(self, events: int, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.n = events
        self.n_accounts = max(1, events // 20)
        self.p_new = self.n_accounts / max(1.0, 0.6 * events)
        self.now = START_MS
        self.step = 0
        self.offsets: dict[tuple[str, int], int] = {}
        self.event_seq = 0
        self.post_seq = 0
        self.accounts: list[_Account] = []
        self.live: list[_Post] = []
        self.heap: list[tuple[int, int, str, _Account]] = []
        self.heap_seq = 0
        self.recent: list[tuple[str, str, str]] = []
        self.recent_pos = 0
        self.malformed_cycle: list[str] = []
        self._sec = -1
        self._prefix = ""
        self.in_keys, self.in_cum = _weighted(_IN_REGION)
        self.out_keys, self.out_cum = _weighted(_OUT_OF_REGION)
        # Sentence pools, drawn from the seed.
        self.sentences: dict[str, list[str]] = {}
        for lang, words in _WORDS.items():
            ws = words.split()
            pool = []
            for _ in range(300):
                s = " ".join(rng.choice(ws) for _ in range(rng.randint(3, 14)))
                pool.append(s[0].upper() + s[1:] + rng.choice(".....!!?"))
            self.sentences[lang] = pool
        for lang, words in _CJK.items():
            ws = words.split()
            self.sentences[lang] = [
                "".join(rng.choice(ws) for _ in range(rng.randint(3, 12)))
                + rng.choice("\u3002\u3002\uff01\uff1f")
                for _ in range(300)
            ]
        self.langs = list(self.sentences)
        self.tags = [w for w in _WORDS["en"].split() if len(w) > 3]

    # ------------------------------------------------------------------ helpers

    def fmt(self, ms: int) -> str:
        sec, frac = divmod(ms, 1000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{frac:03d}Z" if frac else f"{self._prefix}Z"

    def ts_ms(self) -> int:
        """The ts of the next event: now, or now slightly in the past."""
        if self.rng.random() < P_OUT_OF_ORDER:
            return self.now - self.rng.randrange(1_000, 300_000)
        return self.now

    def next_event_id(self) -> str:
        self.event_seq += 1
        return f"e-{self.event_seq}"

    def schedule(self, delay: int, action: str, acct: _Account) -> None:
        self.heap_seq += 1
        heapq.heappush(self.heap, (self.step + max(1, delay), self.heap_seq, action, acct))

    def envelope(self, topic: str, key: str, payload: str | None) -> dict[str, Any]:
        p = partition_for(key)
        tp = (topic, p)
        off = self.offsets.get(tp, 0)
        self.offsets[tp] = off + 1
        return {"topic": topic, "partition": p, "offset": off, "key": key, "payload": payload}

    def emit(self, topic: str, key: str, payload: str) -> bytes:
        """A valid event: remember it for redeliveries."""
        if len(self.recent) < 4096:
            self.recent.append((topic, key, payload))
        else:
            self.recent[self.recent_pos] = (topic, key, payload)
            self.recent_pos = (self.recent_pos + 1) % 4096
        return orjson.dumps(self.envelope(topic, key, payload))

    def pick_account(self) -> _Account:
        accounts, rng = self.accounts, self.rng
        for _ in range(8):
            # favour recent accounts a little: they are the active ones
            a = accounts[len(accounts) - 1 - int(len(accounts) * rng.random() ** 1.5)]
            if not a.deleted:
                return a
        return a

    def text(self, lang: str) -> str:
        rng = self.rng
        pool = self.sentences[lang]
        target = 20 + int(380 * rng.random() ** 2.2)
        sep = "" if lang in _CJK else " "
        t = rng.choice(pool)
        while len(t) < target:
            t += sep + rng.choice(pool)
        r = rng.random()
        if r < 0.2:
            t += " " + " ".join(rng.choice(_EMOJI) for _ in range(rng.randint(1, 3)))
        elif r < 0.28:
            t += " #" + rng.choice(self.tags) + " @" + f"user{rng.randrange(10_000)}"
        if rng.random() < 0.01:  # leaves room for what the transform adds
            return rng.choice(_SPECIAL)(t[:340])
        return t[:400]

    # ------------------------------------------------------------------ accounts

    def new_account(self) -> _Account:
        rng = self.rng
        aid = f"acct-{len(self.accounts) + 1}"
        r = rng.random()
        if r < 0.015:
            birth = None
        elif r < 0.015 + 0.08:  # a minor at post time (2025-06 onwards)
            if rng.random() < 0.15:  # turns 18 within the first weeks of the log
                d = date(2007, 6, 2).toordinal() + rng.randrange(45)
            elif rng.random() < 0.01:
                d = date(2008, 2, 29).toordinal()
            else:
                d = date(2008, 1, 1).toordinal() + rng.randrange(1612)  # .. 2012-05-30
            birth = date.fromordinal(d).isoformat()
        elif rng.random() < 0.003:
            birth = f"{rng.choice((1964, 1980, 1988, 1996, 2000, 2004))}-02-29"
        else:
            age_days = int(rng.triangular(18.05, 80, 30) * 365.25)
            birth = date.fromordinal(_ORD_2025_06_01 - age_days).isoformat()
        r = rng.random()
        if r < 0.01:
            country = None
        elif r < 0.01 + 0.85:
            country = rng.choices(self.in_keys, cum_weights=self.in_cum)[0]
        else:
            country = rng.choices(self.out_keys, cum_weights=self.out_cum)[0]
        lang = _COUNTRY_LANG.get(country or "", "en")
        if rng.random() < 0.01:
            lang = rng.choice(("ja", "zh"))
        surface = "facebook" if rng.random() < 0.55 else "instagram"
        acct = _Account(aid, birth, country, lang, surface)
        self.accounts.append(acct)
        remaining = max(2, self.n - self.step)
        if rng.random() < 0.10:  # objects at some point
            delay = rng.randrange(1, max(2, int(remaining * 0.8)))
            self.schedule(delay, "objection.filed", acct)
            if rng.random() < 1 / 3:
                if rng.random() < 0.03:
                    self.schedule(delay, "objection.tie", acct)
                else:
                    later = rng.randrange(1, max(2, int((remaining - delay) * 0.9)))
                    self.schedule(delay + later, "objection.withdrawn", acct)
        if rng.random() < 0.08:  # profile changes later (move, correction, re-send)
            self.schedule(rng.randrange(1, remaining), "profile.change", acct)
        if rng.random() < 0.003:  # a conflicting profile with the same ts
            self.schedule(rng.randrange(1, remaining), "profile.conflict", acct)
        if rng.random() < 0.02:  # deletes the account near the end of its life
            self.schedule(rng.randrange(remaining // 2, remaining), "account.deleted", acct)
        return acct

    def profile(self, acct: _Account, ms: int) -> bytes:
        acct.profile_ts = ms
        payload = orjson.dumps(
            {
                "event_id": self.next_event_id(),
                "type": "account.upserted",
                "ts": self.fmt(ms),
                "account_id": acct.id,
                "birth_date": acct.birth,
                "country": acct.country,
            }
        ).decode()
        return self.emit("accounts", acct.id, payload)

    def objection(self, acct: _Account, kind: str, ms: int) -> bytes:
        ev: dict[str, Any] = {
            "event_id": self.next_event_id(),
            "type": kind,
            "ts": self.fmt(ms),
            "account_id": acct.id,
        }
        if self.rng.random() < 0.95:
            ev["channel"] = self.rng.choice(_CHANNELS)
        return self.emit("objections", acct.id, orjson.dumps(ev).decode())

    def due(self) -> tuple[str, bytes] | None:
        _, _, action, acct = heapq.heappop(self.heap)
        if acct.deleted:
            return None
        rng = self.rng
        if action in ("objection.filed", "objection.withdrawn"):
            return action, self.objection(acct, action, self.ts_ms())
        if action == "objection.tie":  # withdrawn at the very ts of a filed
            ms = self.ts_ms()
            self.schedule(1, "objection.filed@" + str(ms), acct)
            return "objection.withdrawn", self.objection(acct, "objection.withdrawn", ms)
        if action.startswith("objection.filed@"):
            return "objection.filed", self.objection(acct, "objection.filed", int(action[16:]))
        if action == "profile.late":
            return "account.upserted", self.profile(acct, self.ts_ms())
        if action == "profile.change":
            r = rng.random()
            if r < 0.4:  # moves
                acct.country = rng.choice(("DE", "FR", "ES", "NL", "US", "GB", "CH", "IT"))
            elif r < 0.6:  # birth date corrected / filled in / removed
                acct.birth = (
                    None if rng.random() < 0.2
                    else date.fromordinal(
                        _ORD_2025_06_01 - int(rng.uniform(14, 70) * 365.25)
                    ).isoformat()
                )  # fmt: skip
            # else: the same profile re-sent with a newer ts
            return "account.upserted", self.profile(acct, self.ts_ms())
        if action == "profile.conflict":
            if acct.profile_ts < 0:
                return None
            old = acct.country
            acct.country = "FR" if old != "FR" else "DE"
            line = self.profile(acct, acct.profile_ts)
            return "account.upserted", line
        if action == "account.deleted":
            acct.deleted = True
            payload = orjson.dumps(
                {
                    "event_id": self.next_event_id(),
                    "type": "account.deleted",
                    "ts": self.fmt(self.ts_ms()),
                    "account_id": acct.id,
                }
            ).decode()
            return "account.deleted", self.emit("accounts", acct.id, payload)
        raise AssertionError(action)

    # ------------------------------------------------------------------ posts

    def post_event(self, acct: _Account) -> dict[str, Any]:
        """A new post of acct (not emitted), recorded as live."""
        rng = self.rng
        ms = self.ts_ms()
        stamp = self.fmt(ms)
        self.post_seq += 1
        pid = f"p-{self.post_seq}"
        surface: str | None = acct.surface if rng.random() < 0.8 else (
            "instagram" if acct.surface == "facebook" else "facebook"
        )  # fmt: skip
        r = rng.random()
        if r < 0.05:
            kind, audience = "message", "private"
        else:
            if surface == "instagram":
                kind = "post" if r < 0.4 else ("comment" if r < 0.8 else "caption")
            else:
                kind = "post" if r < 0.55 else "comment"
            r = rng.random()
            audience = "public" if r < 0.84 else ("friends" if r < 0.95 else "private")
        r = rng.random()
        lang = acct.lang if r < 0.85 else ("en" if r < 0.97 else rng.choice(self.langs))
        ev: dict[str, Any] = {
            "event_id": self.next_event_id(),
            "type": "post.created",
            "ts": stamp,
            "post_id": pid,
            "account_id": acct.id,
            "created_at": stamp,
            "kind": kind,
            "audience": audience,
            "text": self.text(lang),
        }
        r = rng.random()
        if r < 0.96:
            ev["lang"] = rng.choice(_LANG_CODES[lang])
        elif r < 0.97:
            ev["lang"] = None
        elif r < 0.975:
            ev["lang"] = "und"
        r = rng.random()
        if r < 0.98:
            ev["surface"] = surface
        elif r < 0.99:
            surface = ev["surface"] = None
        else:
            surface = None
        post = _Post(
            pid=pid, acct=acct, created_at=stamp, kind=kind, audience=audience,
            surface=surface, last_ms=ms,
        )  # fmt: skip
        self.live.append(post)
        return ev

    def pick_live(self) -> int:
        n = len(self.live)
        return n - 1 - int(n * self.rng.random() ** 3)

    def update_event(self, post: _Post) -> dict[str, Any]:
        rng = self.rng
        ms = self.ts_ms()
        if ms <= post.last_ms and rng.random() < 0.5:
            ms = post.last_ms + 1  # an edit is later than the version it edits
        post.last_ms = max(post.last_ms, ms)
        if post.kind != "message":
            r = rng.random()
            if r < 0.08:
                post.audience = "friends" if post.audience == "public" else "public"
            elif r < 0.1:
                post.audience = "private"
        lang = post.acct.lang if rng.random() < 0.9 else "en"
        ev: dict[str, Any] = {
            "event_id": self.next_event_id(),
            "type": "post.updated",
            "ts": self.fmt(ms),
            "post_id": post.id,
            "account_id": post.acct.id,
            "created_at": post.created_at,
            "kind": post.kind,
            "audience": post.audience,
            "text": self.text(lang) + (" (edited)" if rng.random() < 0.3 else ""),
            "lang": rng.choice(_LANG_CODES[lang]),
        }
        if post.surface is not None:
            ev["surface"] = post.surface
        return ev

    def regular(self) -> tuple[str, bytes]:
        rng = self.rng
        r = rng.random()
        live = self.live
        if r < 0.09 and live:
            ev = self.update_event(live[self.pick_live()])
        elif r < 0.14 and live:
            i = self.pick_live()
            post = live[i]
            live[i] = live[-1]
            live.pop()
            ms = self.ts_ms()
            ev = {
                "event_id": self.next_event_id(),
                "type": "post.deleted",
                "ts": self.fmt(max(ms, post.last_ms)),
                "post_id": post.id,
                "account_id": post.acct.id,
            }
        else:
            ev = self.post_event(self.pick_account())
        return ev["type"], self.emit("posts", ev["account_id"], orjson.dumps(ev).decode())

    # ------------------------------------------------------------------ bad input

    def malformed(self) -> tuple[str, bytes]:
        rng = self.rng
        if not self.malformed_cycle:
            self.malformed_cycle = list(MALFORMED_KINDS)
            rng.shuffle(self.malformed_cycle)
        kind = self.malformed_cycle.pop()
        acct = self.pick_account()
        r = rng.random()
        topic = "posts" if r < 0.7 else ("accounts" if r < 0.85 else "objections")
        if kind in ("bad_enum", "duplicate_key", "id_too_long"):
            topic = "posts"
        # A base event of that topic (posts: a new post, or an edit of a live one).
        ev: dict[str, Any]
        if topic == "posts":
            if self.live and rng.random() < 0.5:
                ev = self.update_event(self.live[self.pick_live()])
            else:
                ev = self.post_event(acct)
                self.live.pop()  # a post that only ever exists malformed
            acct = self.accounts[int(ev["account_id"][5:]) - 1]
        elif topic == "accounts":
            ev = {"event_id": self.next_event_id(), "type": "account.upserted",
                  "ts": self.fmt(self.ts_ms()), "account_id": acct.id,
                  "birth_date": acct.birth, "country": acct.country}  # fmt: skip
        else:
            ev = {
                "event_id": self.next_event_id(),
                "type": "objection.filed",
                "ts": self.fmt(self.ts_ms()),
                "account_id": acct.id,
                "channel": "email",
            }
        key = acct.id
        stdlib = False
        payload: str | None
        if kind == "invalid_json":
            s = orjson.dumps(ev).decode()
            payload = rng.choice(
                (
                    s[: rng.randrange(1, len(s) - 1)],
                    s.replace('":', '"', 1),
                    s + "}",
                    "{'a': 1}",
                    "",
                )
            )
        elif kind == "lone_surrogate":  # invalid UTF-8, as surrogateescape decodes it
            field = "text" if topic == "posts" else "event_id"
            ev[field] = ev[field][:10] + "\udcff" + ev[field][10:]
            payload = json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
            stdlib = True
        elif kind == "nan":
            s = orjson.dumps(ev).decode()
            payload = rng.choice((s[:-1] + ',"score":NaN}', s[:-1] + ',"weight":-Infinity}'))
        elif kind == "bom":
            payload = "\ufeff" + orjson.dumps(ev).decode()
        elif kind == "duplicate_key":  # parsers disagree which copy wins
            ev["audience"] = "private"
            payload = orjson.dumps(ev).decode()[:-1] + ',"audience":"public"}'
        elif kind == "missing_field":
            required = {
                "posts": ("ts", "text", "audience", "kind", "created_at", "event_id", "post_id"),
                "accounts": ("birth_date", "country", "ts"),
                "objections": ("ts", "type", "event_id"),
            }[topic]
            del ev[rng.choice(required)]
            payload = orjson.dumps(ev).decode()
        elif kind == "bad_enum":
            if rng.random() < 0.5:
                ev["audience"] = rng.choice(("Public", "everyone", "PUBLIC", ""))
            else:
                ev["kind"] = rng.choice(("story", "reel", "Post", "dm"))
            payload = orjson.dumps(ev).decode()
        elif kind == "wrong_type":
            field, value = {
                "posts": rng.choice((("audience", 1), ("text", None), ("created_at", 1748736000))),
                "accounts": rng.choice((("birth_date", 19900101), ("country", ["DE"]))),
                "objections": rng.choice((("account_id", 42), ("ts", 1748736000))),
            }[topic]
            ev[field] = value
            payload = orjson.dumps(ev).decode()
        elif kind == "unknown_type":
            ev["type"] = rng.choice(
                {
                    "posts": ("post.liked", "post.shared", "account.upserted", "Post.Created"),
                    "accounts": ("account.suspended", "post.created", "objection.filed"),
                    "objections": ("objection.revoked", "account.deleted", "objection"),
                }[topic]
            )
            payload = orjson.dumps(ev).decode()
        elif kind == "bad_time":
            bad = rng.choice(
                (
                    "2025-13-01T00:00:00Z", "2025-13-01T00:00:00Z", "2025-06-31T10:00:00Z",
                    "2025-06-01 10:00:00Z", "2025-06-01T10:00:00", "2025-06-30T23:59:60Z",
                    "2025-06-01T10:00Z", "yesterday", "",
                )
            )  # fmt: skip
            field = "ts"
            if topic == "posts" and rng.random() < 0.3:
                field = "created_at"
            elif topic == "accounts" and rng.random() < 0.4:
                field, bad = "birth_date", rng.choice(("2001-02-30", "1990-13-01", "01.02.1990"))
            ev[field] = bad
            payload = orjson.dumps(ev).decode()
        elif kind == "key_mismatch":
            other = self.pick_account().id
            key = other if other != acct.id else acct.id + "0"
            payload = orjson.dumps(ev).decode()
        elif kind == "tombstone":
            payload = None
        elif kind == "not_object":
            payload = rng.choice(("[1,2,3]", '"hello"', "42", "null", "true", "[]"))
        elif kind == "id_too_long":
            ev["post_id"] = "p-" + "9" * rng.randrange(255, 400)
            payload = orjson.dumps(ev).decode()
        elif kind == "unknown_topic":
            topic = rng.choice(("post", "Posts", "comments", "accounts-v2"))
            payload = orjson.dumps(ev).decode()
        else:  # pragma: no cover
            raise AssertionError(kind)
        env = self.envelope(topic, key, payload)
        if stdlib:  # orjson refuses lone surrogates; json writes them as \udcff
            line = json.dumps(env, separators=(",", ":")).encode("ascii")
        else:
            line = orjson.dumps(env)
        if topic == "accounts" and rng.random() < 0.5:
            self.schedule(rng.randrange(1, 500), "profile.change", acct)  # sent again, fixed
        return "malformed:" + kind, line

    # ------------------------------------------------------------------ main loop

    def run(self) -> Iterator[tuple[str, bytes]]:
        rng = self.rng
        heap = self.heap
        n = self.n
        while self.step < n:
            self.now += rng.randrange(0, 2 * MEAN_STEP_MS)
            out: tuple[str, bytes] | None = None
            if heap and heap[0][0] <= self.step:
                out = self.due()
            if out is None:
                if not self.accounts or (
                    len(self.accounts) < self.n_accounts and rng.random() < self.p_new
                ):
                    acct = self.new_account()
                    r = rng.random()
                    if r < 0.93 * 0.96:  # profile first
                        out = "account.upserted", self.profile(acct, self.ts_ms())
                    else:
                        if r < 0.96:  # the profile arrives after some posts
                            self.schedule(rng.randrange(5, 3000), "profile.late", acct)
                        # else: never a profile (age_unknown)
                        ev = self.post_event(acct)
                        out = "post.created", self.emit("posts", acct.id, orjson.dumps(ev).decode())
                elif (r := rng.random()) < P_REDELIVERY and self.recent:
                    topic, key, payload = rng.choice(self.recent)
                    out = "redelivery", orjson.dumps(self.envelope(topic, key, payload))
                elif r < P_REDELIVERY + P_MALFORMED:
                    out = self.malformed()
                else:
                    out = self.regular()
            yield out
            self.step += 1


def generate_labeled(events: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """Yield (label, line) for `events` lines; label names what the line is."""
    return _Generator(events, seed).run()


def generate(events: int, seed: int) -> Iterator[bytes]:
    """Yield `events` envelope lines (bytes, without the newline), deterministic for seed."""
    for _, line in _Generator(events, seed).run():
        yield line


def write_log(path: str | Path, events: int, seed: int) -> int:
    """Write an event log of `events` lines to path; return the number of bytes."""
    total = 0
    with open(path, "wb") as f:
        buf: list[bytes] = []
        for line in generate(events, seed):
            buf.append(line)
            if len(buf) >= 4096:
                data = b"\n".join(buf) + b"\n"
                f.write(data)
                total += len(data)
                buf.clear()
        if buf:
            data = b"\n".join(buf) + b"\n"
            f.write(data)
            total += len(data)
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, required=True, help="number of lines to write")
    ap.add_argument("--seed", type=int, default=1, help="random seed (same seed, same bytes)")
    ap.add_argument("--out", required=True, help="output file ('-' for stdout)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.out == "-":
        try:
            out = sys.stdout.buffer
            for line in generate(args.events, args.seed):
                out.write(line + b"\n")
            out.flush()
        except BrokenPipeError:  # e.g. piped into head
            sys.stderr.close()
    else:
        size = write_log(args.out, args.events, args.seed)
        dt = time.perf_counter() - t0
        print(
            f"wrote {args.events} events ({size / 1e6:.1f} MB) to {args.out} in {dt:.1f}s",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
