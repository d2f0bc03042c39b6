"""A test network of namespaces, built by the test and removed even when it fails.

    client ──veth── fabric (bridge br0) ──veth── host-a (bridge, tap for the VM)
                                       └─veth── host-b (bridge, tap for the VM)

Addresses only from 192.0.2.0/24. Names carry a per-run suffix so that runs never
collide and everything can be found again for removal.
"""
import os
import subprocess

NET = "192.0.2"


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=20)


class NetLab:
    def __init__(self):
        self.tag = f"g{os.getpid() % 100000}"
        self.ns = {n: f"{n}-{self.tag}" for n in ("fabric", "host-a", "host-b", "client")}
        self.ip = {"host-a": f"{NET}.11", "host-b": f"{NET}.12", "client": f"{NET}.100",
                   "guest": f"{NET}.50"}
        self.tap = {"host-a": f"tapa{self.tag}"[:15], "host-b": f"tapb{self.tag}"[:15]}

    def run(self, ns, *cmd, check=True):
        return sh("ip", "netns", "exec", self.ns[ns], *cmd, check=check)

    def _veth(self, side):
        a, b = f"v{side[-1]}{self.tag}"[:15], f"f{side[-1]}{self.tag}"[:15]
        sh("ip", "link", "add", a, "netns", self.ns[side], "type", "veth", "peer", "name", b,
           "netns", self.ns["fabric"])
        self.run("fabric", "ip", "link", "set", b, "master", "br0", "up")
        return a

    def _host(self, side):
        veth = self._veth(side)
        self.run(side, "ip", "link", "add", "br0", "type", "bridge")
        self.run(side, "ip", "link", "set", veth, "master", "br0", "up")
        self.run(side, "ip", "tuntap", "add", "dev", self.tap[side], "mode", "tap", "vnet_hdr")
        self.run(side, "ip", "link", "set", self.tap[side], "master", "br0", "up")
        self.run(side, "ip", "addr", "add", f"{self.ip[side]}/24", "dev", "br0")
        self.run(side, "ip", "link", "set", "br0", "up")
        self.run(side, "ip", "link", "set", "lo", "up")

    def up(self):
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
        self.run("fabric", "ip", "link", "add", "br0", "type", "bridge")
        self.run("fabric", "ip", "link", "set", "br0", "up")
        self._host("host-a")
        self._host("host-b")
        veth = self._veth("client")
        self.run("client", "ip", "addr", "add", f"{self.ip['client']}/24", "dev", veth)
        self.run("client", "ip", "link", "set", veth, "up")
        self.run("client", "ip", "link", "set", "lo", "up")
        return self

    def down(self):
        for ns in self.ns.values():
            sh("ip", "netns", "del", ns, check=False)
