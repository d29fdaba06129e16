"""OpenPGP public keys as APT's ``Signed-By`` takes them: the packet framing of RFC 4880 / RFC 9580, no cryptography.

A key file is a transferable public key (or several): packets, the first of each a public-key packet (tag 6),
followed by user IDs, signatures and subkeys (tag 14). This module reads the framing (old and new packet headers),
ASCII armour (base64 between the armour lines, the CRC24 line checked when present) and each key's fingerprint
(v4: SHA-1 over 0x99, a two-octet length and the key packet's body; v6: SHA-256 over 0x9B, a four-octet length and
the body). It verifies no signature: APT does that with the key. Errors never quote the file's content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

PUBLIC_KEY, SECRET_KEY, PUBLIC_SUBKEY, SECRET_SUBKEY = 6, 5, 14, 7
ARMOUR_BEGIN = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
ARMOUR_END = b"-----END PGP PUBLIC KEY BLOCK-----"


class NotAKey(ValueError):
    """The bytes are not an OpenPGP public key; the message says why, without quoting them."""


def crc24(data: bytes) -> int:
    """The CRC-24 of RFC 4880 section 6.1 (the armour's checksum)."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmour(data: bytes) -> bytes:
    """The binary packets inside an ASCII-armoured public key block."""
    lines = data.strip().splitlines()
    if not lines or lines[0].strip() != ARMOUR_BEGIN:
        raise NotAKey(f"it does not start with {ARMOUR_BEGIN.decode()!r}")
    try:
        end = next(i for i, line in enumerate(lines) if line.strip() == ARMOUR_END)
    except StopIteration:
        raise NotAKey(f"the armour has no {ARMOUR_END.decode()!r} line") from None
    body = [line.strip() for line in lines[1:end]]
    if b"" in body:                                 # armour headers (Version:, Comment:) end at the first blank line
        body = body[body.index(b"") + 1:]
    checksum = None
    if body and body[-1].startswith(b"="):
        checksum, body = body[-1][1:], body[:-1]
    try:
        packets = base64.b64decode(b"".join(body), validate=True)
        expected = base64.b64decode(checksum, validate=True) if checksum is not None else None
    except (binascii.Error, ValueError):
        raise NotAKey("the armour is not valid base64") from None
    if expected is not None and (len(expected) != 3 or int.from_bytes(expected, "big") != crc24(packets)):
        raise NotAKey("the armour's CRC24 checksum does not match its content")
    return packets


def packets(data: bytes) -> list[tuple[int, bytes]]:
    """Each packet's (tag, body) in ``data``, by the old and new header formats; partial and indeterminate lengths
    (which only data packets may use) are refused."""
    out: list[tuple[int, bytes]] = []
    at = 0
    while at < len(data):
        header = data[at]
        if not header & 0x80:
            raise NotAKey(f"byte {at} is not a packet header")
        if header & 0x40:                           # new format: tag in the low six bits, then a variable length
            tag, at = header & 0x3F, at + 1
            if at >= len(data):
                raise NotAKey("a packet header is cut off")
            first = data[at]
            if first < 192:
                length, at = first, at + 1
            elif first < 224:
                if at + 1 >= len(data):
                    raise NotAKey("a packet header is cut off")
                length, at = ((first - 192) << 8) + data[at + 1] + 192, at + 2
            elif first == 255:
                if at + 5 > len(data):
                    raise NotAKey("a packet header is cut off")
                length, at = int.from_bytes(data[at + 1:at + 5], "big"), at + 5
            else:
                raise NotAKey(f"the packet at byte {at - 1} has a partial body length, which key packets never have")
        else:                                       # old format: tag in bits 5-2, length type in bits 1-0
            tag, size = (header >> 2) & 0x0F, header & 0x03
            if size == 3:
                raise NotAKey(f"the packet at byte {at} has an indeterminate length")
            width = 1 << size
            if at + 1 + width > len(data):
                raise NotAKey("a packet header is cut off")
            length, at = int.from_bytes(data[at + 1:at + 1 + width], "big"), at + 1 + width
        if at + length > len(data):
            raise NotAKey(f"a packet (tag {tag}) is cut off: it announces {length} bytes, {len(data) - at} remain")
        out.append((tag, data[at:at + length]))
        at += length
    return out


def fingerprint(body: bytes) -> str:
    """The fingerprint of a public-key or public-subkey packet's body, upper-case hexadecimal."""
    version = body[0] if body else None
    if version == 4:
        if len(body) > 0xFFFF:
            raise NotAKey(f"a version 4 key packet of {len(body)} bytes: its fingerprint holds at most 65535")
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body, usedforsecurity=False).hexdigest().upper()
    if version == 6:
        return hashlib.sha256(b"\x9b" + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise NotAKey(f"a key packet of version {version}: only version 4 and 6 keys are read (RFC 4880, RFC 9580)")


def key_fingerprints(data: bytes) -> list[str]:
    """The fingerprints of every primary key and subkey in a public key file (binary or ASCII-armoured), primary
    keys first in file order; raises NotAKey if the file is not one or more transferable public keys."""
    if data.lstrip().startswith(b"-----"):
        data = dearmour(data)
    found = packets(data)
    if not found:
        raise NotAKey("it holds no packets")
    if found[0][0] != PUBLIC_KEY:
        what = "a secret key" if found[0][0] in (SECRET_KEY, SECRET_SUBKEY) else f"a packet of tag {found[0][0]}"
        raise NotAKey(f"it starts with {what}, not a public-key packet (tag 6)")
    if any(tag in (SECRET_KEY, SECRET_SUBKEY) for tag, _ in found):
        raise NotAKey("it holds secret key material")
    primaries = [fingerprint(body) for tag, body in found if tag == PUBLIC_KEY]
    return primaries + [fingerprint(body) for tag, body in found if tag == PUBLIC_SUBKEY]
