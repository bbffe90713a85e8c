import uuid


def kubeconfig_aad(cluster_id: uuid.UUID) -> bytes:
    return f"k8s_clusters.kubeconfig:{cluster_id}".encode()
