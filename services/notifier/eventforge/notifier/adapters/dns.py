"""Host name resolution with the system resolver (`getaddrinfo`), IPv4 and IPv6."""

from __future__ import annotations

import socket

from eventforge.notifier.service_layer.ports import ResolutionFailed, Resolver


class SystemResolver(Resolver):
    def resolve(self, host: str, port: int) -> list[str]:
        try:
            answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            raise ResolutionFailed(str(error)) from error
        addresses: list[str] = []
        for _family, _type, _proto, _name, sockaddr in answers:
            address = str(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
        return addresses
