"""The host seam without root: the route items the coordinator queues are the ones a host installs, one netlink
batch each, and the coordinator's applied-state view keeps what was applied when it grows."""

import numpy as np

from lasernet.emulation.coordinator import AppliedLinks
from lasernet.emulation.host import LocalHost


class _RecordingKernel:
    def __init__(self):
        self.calls = []

    def routes_bulk(self, node, dst, via, dev):
        self.calls.append(("routes_bulk", node, list(dst), list(via), list(dev)))

    def prefixes_bulk(self, node, first, host_bits, via, dev):
        self.calls.append(("prefixes_bulk", node, list(first), list(host_bits)))

    def unreachable(self, node, dsts):
        self.calls.append(("unreachable", node, list(dsts)))

    def routes(self, node, entries):
        self.calls.append(("routes", node, list(entries)))

    def commit(self):
        self.calls.append(("commit",))
        return 1


def test_host_installs_each_route_item_kind_in_order_with_one_commit_per_item(tmp_path):
    host = LocalHost("run", tmp_path, state=None)
    host.kernel = kernel = _RecordingKernel()
    items = [("prefixes", 0, np.array([1]), np.array([2]), np.array([7], np.uint32), np.array(["a"], object)),
             ("routes", 1, np.array([3, 4]), np.array([5, 6], np.uint32), np.array(["x", "y"], object)),
             ("unreachable", 2, [5]),
             ("entries", 3, [(4, None)])]
    assert host.install_routes(items) == 4
    assert [c[0] for c in kernel.calls] == ["prefixes_bulk", "commit", "routes_bulk", "commit", "unreachable",
                                             "commit", "routes", "commit"]
    assert kernel.calls[2] == ("routes_bulk", 1, [3, 4], [5, 6], ["x", "y"])
    assert kernel.calls[6] == ("routes", 3, [(4, None)])


def test_applied_view_grows_without_losing_what_was_applied():
    a = AppliedLinks()
    a.grow(3)
    a.valid[2], a.up[2], a.delay_s[2] = True, True, 0.0123
    a.grow(1000)
    assert len(a.up) >= 1000 and a.valid[2] and a.up[2] and a.delay_s[2] == 0.0123
    assert not a.valid[3:].any()
