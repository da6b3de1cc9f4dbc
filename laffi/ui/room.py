"""Serving a room: the address the audience opens (with a QR code), and who may see whose feedback.

Usage:
    url = room_url("0.0.0.0", 7860)      # http://<this machine's address on the local network>:7860
    set_room(url); room_markdown()       # launch() records it; the page shows it (and qr_image(url)) on load

When the presenter serves the room (app.py --host 0.0.0.0, or a share link), everyone's page shows the address
to open and a QR code of it; each participant sees their own answers (a gr.State per browser) and their session
id, which withdraws their feedback. The Feedback tab lists everyone's rows only to the admin (or on a machine
that serves itself alone).
"""

from __future__ import annotations

import socket

_ROOM: dict = {"url": None}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def lan_address() -> str | None:
    """This machine's address on its local network (the one other devices reach it at), or None. Asked of the
    machine's own name and interfaces: nothing is sent anywhere."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        infos = []
    addresses = [info[4][0] for info in infos] + _interface_addresses()
    return next((a for a in addresses if not a.startswith("127.")), None)


def _interface_addresses() -> list[str]:
    """IPv4 addresses of this machine's network interfaces (Linux/macOS ioctl; [] where that is unavailable)."""
    try:
        import fcntl
        import struct
    except ImportError:  # Windows
        return []
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
                out.append(socket.inet_ntoa(raw[20:24]))
            except OSError:
                continue
    return out


def room_url(host: str, port: int, share_url: str | None = None) -> str | None:
    """The address the audience opens: the share link, else this machine's LAN address when serving every
    interface, else the host given; None when served on loopback only (nobody else can reach it)."""
    if share_url:
        return share_url
    if host in LOOPBACK:
        return None
    shown = lan_address() if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{port}/" if shown else None


def set_room(url: str | None) -> None:
    _ROOM["url"] = url


def current_room() -> str | None:
    return _ROOM["url"]


def room_markdown() -> str:
    url = current_room()
    return f"**Join from your phone or laptop:** open `{url}` (or scan the code)." if url else ""


def qr_image(url: str):
    """A QR code of `url` as a PIL image (the qrcode package, drawn with Pillow)."""
    import qrcode

    code = qrcode.QRCode(border=2, box_size=6)
    code.add_data(url)
    code.make(fit=True)
    return code.make_image(fill_color="black", back_color="white").get_image()
