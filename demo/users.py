"""Who a request is counted against: fairness, the per-user cap and the rate limit key on it.

With --auth it is the logged-in user; without, the client's address, so that five browser tabs (or a
script with five API clients) of one person are one share of the device, not five. Behind a reverse
proxy every connection comes from the proxy: its X-Forwarded-For header says who the client is, but
anyone can send that header, so it is read only from the proxies named with --trusted-proxy, by
uvicorn's ProxyHeadersMiddleware (demo.server): the client is the last address in it that is not itself
a trusted proxy (earlier ones are whatever the client chose to send). X-Real-IP is not read: a proxy
that passes the client's own header through would let anyone name any address.
"""
import ipaddress
from typing import Iterable, Optional, Tuple, Union

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


def user_of(request) -> Optional[str]:
    """The user a gr.Request is counted against: "user:NAME" when logged in (--auth), else "address:IP" (the
    client's, as the trusted proxies name it); None without a request (calls from Python, not over HTTP)."""
    if request is None:
        return None
    name = getattr(request, "username", None)
    if name:
        return f"user:{name}"
    address = getattr(getattr(request, "client", None), "host", None)
    return f"address:{address}" if address else None
