"""Metrics the Leiden/UMAP comparisons share (Python side): modularity as igraph computes it
on scanpy's graph, sklearn's trustworthiness, and kNN(15) preservation."""
import numpy as np

K = 15


def modularity(conn, labels):
    """igraph's Graph.modularity on scanpy's undirected graph (one edge per stored entry)."""
    import igraph as ig

    c = conn.tocoo()
    g = ig.Graph(n=conn.shape[0], edges=list(zip(c.row.tolist(), c.col.tolist())), directed=False)
    return g.modularity(list(map(int, labels)), weights=c.data.astype(np.float64))


def trustworthiness(x, e, k=K):
    from sklearn.manifold import trustworthiness as tw

    return tw(np.asarray(x, dtype=np.float64), np.asarray(e, dtype=np.float64), n_neighbors=k)


def knn_preservation(x, e, k=K):
    """Mean fraction of each cell's k nearest neighbours in x that stay among its k in e."""
    from sklearn.neighbors import NearestNeighbors

    def knn(m):
        idx = NearestNeighbors(n_neighbors=k + 1).fit(m).kneighbors(m, return_distance=False)
        return [set(row[row != i][:k]) for i, row in enumerate(idx)]

    a, b = knn(np.asarray(x, dtype=np.float64)), knn(np.asarray(e, dtype=np.float64))
    return float(np.mean([len(p & q) / k for p, q in zip(a, b)]))
