"""Who a request is counted against: fairness, the per-user cap and the rate limit key on it.

With --auth it is the logged-in user; without, the client's address, so that five browser tabs (or a
script with five API clients) of one person are one share of the device, not five. Behind a reverse
proxy every connection comes from the proxy: its X-Real-IP / X-Forwarded-For headers say who the
client is, but anyone can send those headers, so they are read only from the proxies named with
--trusted-proxy.
"""
import ipaddress
from typing import Iterable, Optional, Sequence, Tuple, Union

from glide.errors import UserError

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def trusted_networks(values: Iterable[str]) -> Tuple[Network, ...]:
    """--trusted-proxy values (addresses such as 127.0.0.1, or networks such as 10.0.0.0/8) as networks."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise UserError(f"--trusted-proxy {value!r} is not an IP address or network (such as 127.0.0.1 or "
                            "10.0.0.0/8)") from None
    return tuple(networks)


def _is_trusted(address: Optional[str], trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(peer: Optional[str], headers, trusted: Sequence[Network] = ()) -> Optional[str]:
    """The client's address: the connection's `peer`, or, when the peer is a trusted proxy, the address
    its headers give: X-Real-IP, else the last X-Forwarded-For hop that is not itself a trusted proxy
    (earlier hops are whatever the client chose to send)."""
    if not _is_trusted(peer, trusted):
        return peer
    real_ip = (headers.get("x-real-ip") or "").strip()
    if real_ip:
        return real_ip
    hops = [hop.strip() for hop in (headers.get("x-forwarded-for") or "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def user_of(request, trusted: Sequence[Network] = ()) -> Optional[str]:
    """The user a gr.Request is counted against: "user:NAME" when logged in (--auth), else "address:IP";
    None without a request (calls from Python, not over HTTP)."""
    if request is None:
        return None
    name = getattr(request, "username", None)
    if name:
        return f"user:{name}"
    client = getattr(request, "client", None)
    address = client_address(getattr(client, "host", None), getattr(request, "headers", {}) or {}, trusted)
    return f"address:{address}" if address else None
