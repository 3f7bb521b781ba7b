"""The routing oracle against networkx: next hops, path delays, unreachable pairs, ties and per-tick diffs."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from lasernet.routing import oracle


def random_connected(rng, n_nodes: int, extra: int):
    """A random spanning tree plus ``extra`` random chords; delays are whole nanoseconds of 0.5..20 ms."""
    order = rng.permutation(n_nodes)
    a = [int(order[i]) for i in range(1, n_nodes)]
    b = [int(order[rng.integers(i)]) for i in range(1, n_nodes)]
    while len(a) < n_nodes - 1 + extra:
        u, v = (int(x) for x in rng.integers(n_nodes, size=2))
        if u != v:
            a.append(u)
            b.append(v)
    delay_s = np.rint(rng.uniform(0.5e-3, 20e-3, len(a)) * 1e9) / 1e9
    return np.array(a), np.array(b), delay_s


def plus_grid_torus(planes: int, slots: int):
    """Links of a +Grid torus: each satellite to the next in its plane and to the same slot in the next plane."""
    sat = np.arange(planes * slots).reshape(planes, slots)
    a = np.concatenate([sat.ravel(), sat.ravel()])
    b = np.concatenate([np.roll(sat, -1, axis=1).ravel(), np.roll(sat, -1, axis=0).ravel()])
    return a, b


def to_networkx(n_nodes, a, b, up, delay_s) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(n_nodes))
    for u, v, ok, w in zip(a, b, up, delay_s):
        if ok and (not g.has_edge(u, v) or g[u][v]["weight"] > w):
            g.add_edge(int(u), int(v), weight=float(w))
    return g


def networkx_next_hops(g: nx.Graph) -> np.ndarray:
    n = g.number_of_nodes()
    nh = np.full((n, n), -1)
    for s in range(n):
        for d, p in nx.single_source_dijkstra_path(g, s, weight="weight").items():
            if d != s:
                nh[s, d] = p[1]
    return nh


def assert_matches_networkx(n_nodes, a, b, up, delay_s):
    routes = oracle.compute(n_nodes, a, b, up, delay_s)
    g = to_networkx(n_nodes, a, b, up, delay_s)
    for s in range(n_nodes):
        lengths = nx.single_source_dijkstra_path_length(g, s, weight="weight")
        for d in range(n_nodes):
            if d == s:
                continue
            expected = nx.shortest_path(g, s, d, weight="weight")
            assert routes.next_hop[s, d] == expected[1], (s, d, expected)
            assert routes.delay_s[s, d] == pytest.approx(lengths[d], abs=1e-12)
    return routes


def test_next_hops_equal_networkx_on_random_connected_graphs():
    rng = np.random.default_rng(7)
    for n_nodes, extra in [(2, 0), (12, 5), (40, 30), (80, 160)]:
        a, b, delay_s = random_connected(rng, n_nodes, extra)
        assert_matches_networkx(n_nodes, a, b, np.ones(len(a), bool), delay_s)


def test_next_hops_equal_networkx_on_a_plus_grid_torus_with_distinct_delays():
    rng = np.random.default_rng(3)
    a, b = plus_grid_torus(9, 7)
    delay_s = np.rint(rng.uniform(2e-3, 9e-3, len(a)) * 1e9) / 1e9
    assert_matches_networkx(63, a, b, np.ones(len(a), bool), delay_s)


def test_equal_delay_torus_uses_shortest_paths_with_fewest_hops():
    a, b = plus_grid_torus(8, 6)
    n = 48
    delay_s = np.full(len(a), 4e-3)
    routes = oracle.compute(n, a, b, np.ones(len(a), bool), delay_s)
    g = to_networkx(n, a, b, np.ones(len(a), bool), delay_s)
    hops = dict(nx.all_pairs_shortest_path_length(g))
    for s in range(n):
        for d in range(n):
            if s != d:
                nh = routes.next_hop[s, d]
                assert g.has_edge(s, nh)
                assert hops[nh][d] == hops[s][d] - 1  # the next hop is one hop closer: on a shortest path
                assert routes.hops[s, d] == hops[s][d]
                assert routes.delay_s[s, d] == pytest.approx(4e-3 * hops[s][d], abs=1e-12)


def test_equal_delays_prefer_the_path_with_fewer_hops():
    # 0-1-2 totals 2 ms over two hops; 0-2 is 2 ms direct: the direct link wins, in either link order.
    for a, b in [([0, 1, 0], [1, 2, 2]), ([0, 0, 1], [2, 1, 2])]:
        delay_s = np.array([1e-3, 1e-3, 2e-3]) if a[2] == 0 else np.array([2e-3, 1e-3, 1e-3])
        routes = oracle.compute(3, np.array(a), np.array(b), np.ones(3, bool), delay_s)
        assert routes.next_hop[0, 2] == 2 and routes.next_hop[2, 0] == 0
        assert routes.hops[0, 2] == 1


def test_path_delays_are_the_sums_of_link_delays_along_the_path():
    rng = np.random.default_rng(11)
    n = 50
    a, b, delay_s = random_connected(rng, n, 60)
    routes = oracle.compute(n, a, b, np.ones(len(a), bool), delay_s)
    for s in range(n):
        for d in range(n):
            nodes = oracle.path(routes, s, d)
            assert nodes[0] == s and nodes[-1] == d
            links = [routes.link[u, d] for u in nodes[:-1]]
            for u, v, k in zip(nodes[:-1], nodes[1:], links):
                assert {int(a[k]), int(b[k])} == {u, v}  # the link joins the hop's two nodes
            assert routes.delay_s[s, d] == pytest.approx(sum(delay_s[k] for k in links), abs=1e-12)
            assert routes.hops[s, d] == len(nodes) - 1


def test_parallel_links_route_over_the_faster_one():
    a, b = np.array([0, 1, 0]), np.array([1, 0, 2])
    routes = oracle.compute(3, a, b, np.ones(3, bool), np.array([5e-3, 2e-3, 1e-3]))
    assert routes.link[0, 1] == 1 and routes.link[1, 0] == 1
    assert routes.link[1, 2] == 1 and routes.link[2, 1] == 2
    assert routes.delay_s[1, 2] == pytest.approx(3e-3)


def test_unreachable_pairs_have_no_next_hop_link_or_finite_delay():
    # Two triangles; the bridge 2-3 is down; node 6 has no links at all.
    a, b = np.array([0, 1, 2, 3, 4, 5, 2]), np.array([1, 2, 0, 4, 5, 3, 3])
    up = np.array([True] * 6 + [False])
    routes = oracle.compute(7, a, b, up, np.full(7, 1e-3))
    left, right = [0, 1, 2], [3, 4, 5, 6]
    assert (routes.next_hop[np.ix_(left, right)] == -1).all()
    assert (routes.next_hop[np.ix_(right, left)] == -1).all()
    assert (routes.link[np.ix_(left, right)] == -1).all()
    assert np.isinf(routes.delay_s[np.ix_(left, right)]).all()
    assert (routes.next_hop[6] == -1).all() and (routes.next_hop[:, 6] == -1).all()
    assert (np.diag(routes.next_hop) == -1).all() and (np.diag(routes.delay_s) == 0).all()
    assert oracle.path(routes, 0, 4) == [] and oracle.path(routes, 3, 5) in ([3, 5], [3, 4, 5])


def test_diff_after_one_link_goes_down_lists_exactly_the_changed_entries():
    rng = np.random.default_rng(5)
    a, b = plus_grid_torus(7, 5)
    n = 35
    delay_s = np.rint(rng.uniform(2e-3, 9e-3, len(a)) * 1e9) / 1e9
    up = np.ones(len(a), bool)
    before = oracle.compute(n, a, b, up, delay_s)
    expected_before = networkx_next_hops(to_networkx(n, a, b, up, delay_s))
    down = up.copy()
    down[int(np.argmin(delay_s))] = False  # the fastest link: many paths use it
    after = oracle.compute(n, a, b, down, delay_s)
    expected_after = networkx_next_hops(to_networkx(n, a, b, down, delay_s))

    src, dst = oracle.diff(before, after)
    expected = set(zip(*np.nonzero(expected_before != expected_after)))
    assert set(zip(src.tolist(), dst.tolist())) == {(int(s), int(d)) for s, d in expected}
    assert len(expected) > 0
    # Initial install: every reachable pair.
    src0, dst0 = oracle.diff(None, before)
    assert len(src0) == n * (n - 1)
    assert len(oracle.diff(before, before)[0]) == 0


def test_same_input_gives_the_same_table():
    a, b = plus_grid_torus(6, 6)
    delay_s = np.full(len(a), 3e-3)
    r1 = oracle.compute(36, a, b, np.ones(len(a), bool), delay_s)
    r2 = oracle.compute(36, a, b, np.ones(len(a), bool), delay_s)
    assert (r1.next_hop == r2.next_hop).all() and (r1.link == r2.link).all()


def test_invalid_links_are_errors_naming_the_link():
    with pytest.raises(ValueError, match="link 1 .1-2. delay_s=nan"):
        oracle.compute(3, np.array([0, 1]), np.array([1, 2]), np.array([True, True]), np.array([1e-3, np.nan]))
    with pytest.raises(ValueError, match="endpoints"):
        oracle.compute(2, np.array([0]), np.array([2]), np.array([True]), np.array([1e-3]))
    # A NaN delay on a link that is down is fine (the timeline leaves far ground links uncomputed).
    routes = oracle.compute(3, np.array([0, 1]), np.array([1, 2]), np.array([True, False]), np.array([1e-3, np.nan]))
    assert routes.next_hop[0, 2] == -1


def test_tiny_networks_without_links():
    empty = np.array([], int)
    for n in (1, 3):
        routes = oracle.compute(n, empty, empty, np.array([], bool), np.array([]))
        assert (routes.next_hop == -1).all() and routes.delay_s.shape == (n, n)
        assert len(oracle.diff(None, routes)[0]) == 0


# ---------------------------------------------------------------------------------------------- stub stations
def test_paths_never_pass_through_a_node_that_carries_no_transit():
    """Against networkx on the graph with every other stub removed: for each pair (s, d) the reference is the
    shortest path in G minus the stubs that are neither s nor d; delays, next hops, unreachability and the links
    taken all agree, and no stub ever lies inside a path."""
    rng = np.random.default_rng(17)
    for n_nodes, extra, n_stubs in [(12, 10, 4), (40, 60, 12), (60, 120, 30)]:
        a, b, delay_s = random_connected(rng, n_nodes, extra)
        up = rng.random(len(a)) > 0.1
        transit = np.ones(n_nodes, bool)
        stubs = rng.choice(n_nodes, n_stubs, replace=False)
        transit[stubs] = False
        routes = oracle.compute(n_nodes, a, b, up, delay_s, transit=transit)
        g = to_networkx(n_nodes, a, b, up, delay_s)
        for s in range(n_nodes):
            for d in range(n_nodes):
                if s == d:
                    continue
                keep = [x for x in range(n_nodes) if transit[x] or x in (s, d)]
                h = g.subgraph(keep)
                if not nx.has_path(h, s, d):
                    assert routes.next_hop[s, d] == -1 and np.isinf(routes.delay_s[s, d]), (s, d)
                    continue
                expected = nx.shortest_path(h, s, d, weight="weight")
                length = nx.shortest_path_length(h, s, d, weight="weight")
                assert routes.delay_s[s, d] == pytest.approx(length, abs=1e-12), (s, d)
                assert routes.next_hop[s, d] == expected[1], (s, d, expected)
                nodes = oracle.path(routes, s, d)
                assert transit[nodes[1:-1]].all(), (s, d, nodes)
                assert routes.hops[s, d] == len(nodes) - 1


def test_a_stub_station_between_two_satellites_is_no_shortcut():
    """Satellites 0-1-2-3 in a chain (1 ms a hop) and station 4 linked to 0 and 3 (0.5 ms each): with transit the
    ground shortcut 0-4-3 (1 ms) wins over the chain (3 ms); as a stub the chain carries 0 -> 3, and the station
    still reaches, and is reached from, every satellite."""
    a, b = np.array([0, 1, 2, 4, 4]), np.array([1, 2, 3, 0, 3])
    delay_s = np.array([1e-3, 1e-3, 1e-3, 0.5e-3, 0.5e-3])
    up = np.ones(5, bool)
    relay = oracle.compute(5, a, b, up, delay_s)
    assert oracle.path(relay, 0, 3) == [0, 4, 3]
    stub = oracle.compute(5, a, b, up, delay_s, transit=np.array([True] * 4 + [False]))
    assert oracle.path(stub, 0, 3) == [0, 1, 2, 3] and stub.delay_s[0, 3] == pytest.approx(3e-3)
    assert oracle.path(stub, 4, 2) == [4, 3, 2] and oracle.path(stub, 1, 4) == [1, 0, 4]
    assert stub.delay_s[4, 2] == pytest.approx(1.5e-3) and stub.hops[4, 2] == 2
    assert (stub.next_hop[4, :4] >= 0).all() and (stub.next_hop[:4, 4] >= 0).all()


def test_a_station_that_joins_two_islands_carries_nothing_between_them_as_a_stub():
    # 0-1 and 2-3 are two islands joined only through station 4 (links 4-1, 4-2): as a stub, 0 cannot reach 3.
    a, b = np.array([0, 2, 4, 4]), np.array([1, 3, 1, 2])
    stub = oracle.compute(5, a, b, np.ones(4, bool), np.full(4, 1e-3), transit=np.array([1, 1, 1, 1, 0], bool))
    assert stub.next_hop[0, 3] == -1 and stub.next_hop[1, 2] == -1
    assert oracle.path(stub, 1, 4) == [1, 4] and oracle.path(stub, 0, 4) == [0, 1, 4]
    assert oracle.path(stub, 4, 3) == [4, 2, 3]
    with pytest.raises(ValueError, match="one entry per node"):
        oracle.compute(5, a, b, np.ones(4, bool), np.full(4, 1e-3), transit=np.ones(4, bool))
