"""Ids as bytes. A dead letter may name an account by a Kafka key that is not
UTF-8: it is carried as a str with lone surrogates (surrogateescape) and turns
back into the key's own bytes here, so it hashes and partitions as the key did."""

from __future__ import annotations


def id_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no undecodable byte makes
        return text.encode("utf-8", "surrogatepass")
