"""The object store: one global resourceVersion, a bounded history, and watch fan-out.

This is the part of kube-apiserver + etcd that clients feel: every write bumps one counter,
a list is a consistent snapshot at one version, a watch replays history from a version and
then follows live writes, and once history is compacted past a version the answer is
``410 Gone``, which is what makes informers relist. Keeping all of that in one small class
is what lets the HTTP layer and the fleet simulator stay simple.

Stored objects are never mutated after they are stored; readers through the Python API get
copies, and the HTTP layer reuses each version's serialized bytes.
"""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from kubesim import errors, managed_fields
from kubesim.clock import SimClock, rfc3339
from kubesim.patch import json_merge_patch, json_patch, strategic_merge_patch
from kubesim.quantity import QuantityError, canonicalize_object
from kubesim.resources import Resource, resolve
from kubesim.selectors import Selector

ObjectKey = tuple[str, str]  # (namespace, name); namespace is "" for cluster-scoped kinds

# Kinds whose create strategy sets metadata.generation=1 and bumps it on spec changes.
_GENERATION_KINDS = frozenset({"Deployment", "ReplicaSet", "Pod"})
_PATCH_FUNCS = {
    "merge": json_merge_patch,
    "strategic": strategic_merge_patch,
    "json": json_patch,
}


def copy_object(obj: Any) -> Any:
    """A deep copy through JSON, which is also what the wire would do."""
    return orjson.loads(orjson.dumps(obj))


class Entry:
    """One stored version of an object, with its serialized form cached."""

    __slots__ = ("_raw", "obj")

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self._raw: bytes | None = None

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = orjson.dumps(self.obj)
        return self._raw

    @property
    def rv(self) -> int:
        return int(self.obj["metadata"]["resourceVersion"])


@dataclass(slots=True)
class WatchEvent:
    """One write, as history and watchers see it."""

    rv: int
    type: str  # ADDED, MODIFIED or DELETED
    resource: str  # Resource.key
    entry: Entry
    prev: Entry | None = None


@dataclass(eq=False)
class Subscription:
    """A live feed of one resource's writes; ``None`` on the queue means the store closed it."""

    resource: str
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)

    def close(self) -> None:
        self.queue.put_nowait(None)


@dataclass(slots=True)
class Page:
    entries: list[Entry]
    resource_version: int
    continue_token: str | None
    remaining: int | None


class Store:
    """In-memory objects for every stored resource, kube-apiserver semantics."""

    def __init__(
        self,
        *,
        history_window: int = 10_000,
        clock: SimClock | None = None,
        seed: int = 0,
    ) -> None:
        self.clock = clock or SimClock()
        self._rv = 0
        self._objects: dict[str, dict[ObjectKey, Entry]] = {}
        self._history: deque[WatchEvent] = deque(maxlen=max(1, history_window))
        self._compacted_rv = 0
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._snapshots: OrderedDict[int, tuple[int, list[tuple[ObjectKey, Entry]]]] = OrderedDict()
        self._snapshot_ids = 0
        self._uids = random.Random(f"kubesim-uids-{seed}")
        self._owned: dict[str, set[tuple[str, ObjectKey]]] = {}

    # ------------------------------------------------------------------ versions & history
    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out."""
        return self._rv

    @property
    def compacted_resource_version(self) -> int:
        """Versions at or below this are gone from history (watching from older ones is 410)."""
        return self._compacted_rv

    @property
    def history_window(self) -> int:
        return self._history.maxlen or 0

    @history_window.setter
    def history_window(self, size: int) -> None:
        events = list(self._history)
        self._history = deque(maxlen=max(1, size))
        for event in events:
            self._append_history(event)

    def compact(self) -> int:
        """Forget all history, as etcd compaction does; returns the compacted version."""
        self._history.clear()
        self._compacted_rv = self._rv
        self._snapshots.clear()
        return self._rv

    def _append_history(self, event: WatchEvent) -> None:
        if self._history.maxlen is not None and len(self._history) == self._history.maxlen:
            self._compacted_rv = self._history[0].rv
        self._history.append(event)

    def events_since(self, resource: str | Resource, resource_version: int) -> list[WatchEvent]:
        """History of one resource after ``resource_version``, or 410 if it was compacted."""
        res = resolve(resource)
        if resource_version < self._compacted_rv:
            raise errors.gone(
                f"too old resource version: {resource_version} ({self._compacted_rv})"
            )
        return [e for e in self._history if e.rv > resource_version and e.resource == res.key]

    def subscribe(self, resource: str | Resource) -> Subscription:
        res = resolve(resource)
        subscription = Subscription(res.key)
        self._subscriptions.setdefault(res.key, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.get(subscription.resource, set()).discard(subscription)

    def close_subscriptions(self) -> None:
        """End every live watch (used when the server stops or goes down)."""
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                subscription.close()
            subscriptions.clear()

    def _record(self, res: Resource, kind: str, entry: Entry, prev: Entry | None) -> None:
        event = WatchEvent(entry.rv, kind, res.key, entry, prev)
        self._append_history(event)
        for subscription in self._subscriptions.get(res.key, ()):
            subscription.queue.put_nowait(event)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def new_uid(self) -> str:
        return str(uuid.UUID(int=self._uids.getrandbits(128), version=4))

    # ------------------------------------------------------------------ reads
    def _bucket(self, res: Resource) -> dict[ObjectKey, Entry]:
        return self._objects.setdefault(res.key, {})

    def _key(self, res: Resource, name: str, namespace: str | None) -> ObjectKey:
        if res.namespaced:
            if not namespace:
                raise errors.bad_request(f"{res.plural} are namespaced: a namespace is required")
            return (namespace, name)
        return ("", name)

    def entry(self, resource: str | Resource, name: str, *, namespace: str | None = None) -> Entry:
        """The stored version (not a copy: do not mutate ``entry.obj``)."""
        res = resolve(resource)
        found = self._bucket(res).get(self._key(res, name, namespace))
        if found is None:
            raise errors.not_found(res.plural, name, group=res.group)
        return found

    def get(
        self, resource: str | Resource, name: str, *, namespace: str | None = None
    ) -> dict[str, Any]:
        """A copy of the object; raises ApiError(404) when missing."""
        return copy_object(self.entry(resource, name, namespace=namespace).obj)

    def exists(self, resource: str | Resource, name: str, *, namespace: str | None = None) -> bool:
        res = resolve(resource)
        return self._key(res, name, namespace) in self._bucket(res)

    def iter_entries(
        self,
        resource: str | Resource,
        *,
        namespace: str | None = None,
        selector: Selector | None = None,
    ) -> Iterator[Entry]:
        """Stored versions in key order (namespace, name), filtered."""
        res = resolve(resource)
        bucket = self._bucket(res)
        for key in sorted(bucket):
            if namespace and res.namespaced and key[0] != namespace:
                continue
            entry = bucket[key]
            if selector is None or selector.matches(entry.obj):
                yield entry

    def owned_by(self, uid: str, resource: str | Resource) -> list[Entry]:
        """Stored objects of ``resource`` whose ownerReferences name ``uid`` (key order)."""
        res = resolve(resource)
        bucket = self._bucket(res)
        keys = sorted(k for r, k in self._owned.get(uid, ()) if r == res.key)
        return [bucket[k] for k in keys if k in bucket]

    def list(
        self,
        resource: str | Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Copies of all matching objects, in key order."""
        selector = Selector.parse(label_selector=label_selector, field_selector=field_selector)
        return [
            copy_object(e.obj)
            for e in self.iter_entries(resource, namespace=namespace, selector=selector)
        ]

    def list_page(
        self,
        resource: str | Resource,
        *,
        namespace: str | None = None,
        selector: Selector | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> Page:
        """One page of a list, served from a snapshot so later pages stay consistent."""
        res = resolve(resource)
        if continue_token:
            snapshot_rv, start, snapshot_id = _decode_continue(continue_token)
            if snapshot_rv < self._compacted_rv or snapshot_id not in self._snapshots:
                raise errors.expired_continue()
            snapshot = self._snapshots[snapshot_id][1]
        else:
            bucket = self._bucket(res)
            snapshot = [
                (key, bucket[key])
                for key in sorted(bucket)
                if not (namespace and res.namespaced and key[0] != namespace)
            ]
            snapshot_rv, start, snapshot_id = self._rv, 0, -1
        selected: list[Entry] = []
        index = start
        while index < len(snapshot) and (not limit or len(selected) < limit):
            entry = snapshot[index][1]
            if selector is None or selector.matches(entry.obj):
                selected.append(entry)
            index += 1
        # A page that filled exactly at the end still gets no token when nothing is left.
        more = index < len(snapshot) and (
            selector is None or any(selector.matches(e.obj) for _, e in snapshot[index:])
        )
        if not more:
            return Page(selected, snapshot_rv, None, None)
        if snapshot_id < 0:
            self._snapshot_ids += 1
            snapshot_id = self._snapshot_ids
            self._snapshots[snapshot_id] = (snapshot_rv, snapshot)
            while len(self._snapshots) > 64:
                self._snapshots.popitem(last=False)
        remaining = len(snapshot) - index if selector is None or selector.empty else None
        return Page(
            selected, snapshot_rv, _encode_continue(snapshot_rv, index, snapshot_id), remaining
        )

    # ------------------------------------------------------------------ writes
    def create(
        self,
        resource: str | Resource,
        obj: dict[str, Any],
        *,
        namespace: str | None = None,
        preserve_metadata: bool = False,
        take_ownership: bool = False,
        manager: str | None = None,
    ) -> dict[str, Any]:
        """Store a new object, as POST does; returns a copy of what was stored.

        The server sets ``uid``, ``creationTimestamp``, ``resourceVersion`` (and
        ``generation`` for Deployments/ReplicaSets/Pods), drops ``selfLink`` and
        ``deletionTimestamp``, and folds a Secret's ``stringData`` into ``data``. With
        ``preserve_metadata=True`` a given uid and creationTimestamp are kept (for tests that
        plant exact objects). ``take_ownership=True`` is the simulator's fast path: ``obj`` is
        stored without copying and the stored dict itself is returned (mutate neither).
        ``manager`` (HTTP writes) records a managedFields entry for that field manager.
        """
        res = resolve(resource)
        if take_ownership:
            return self._create(res, obj, namespace, preserve_metadata, copy=False).obj
        entry = self._create(res, obj, namespace, preserve_metadata, manager=manager, sent=obj)
        return copy_object(entry.obj)

    def _create(
        self,
        res: Resource,
        obj: dict[str, Any],
        namespace: str | None,
        preserve: bool,
        *,
        copy: bool = True,
        manager: str | None = None,
        sent: dict[str, Any] | None = None,
    ) -> Entry:
        new = copy_object(obj) if copy else obj
        _check_kind(res, new)
        meta = new.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if res.namespaced:
            body_ns = meta.get("namespace")
            namespace = namespace or body_ns
            if body_ns and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            if not namespace:
                raise errors.bad_request("a namespace is required")
            if not self.exists("namespaces", namespace):
                raise errors.not_found("namespaces", namespace)
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise errors.invalid(
                    res.kind, "", "metadata.name: Required value: name or generateName is required"
                )
            meta["name"] = meta["generateName"] + _random_suffix(self._uids)
        key = self._key(res, meta["name"], namespace)
        bucket = self._bucket(res)
        if key in bucket:
            raise errors.already_exists(res.plural, meta["name"], group=res.group)
        for server_field in ("selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(server_field, None)
        if not (preserve and meta.get("uid")):
            meta["uid"] = self.new_uid()
        if not (preserve and meta.get("creationTimestamp")):
            meta["creationTimestamp"] = self.clock.timestamp()
        if res.kind in _GENERATION_KINDS:
            meta["generation"] = 1
        _apply_kind_defaults(res, new)
        if manager is not None:
            managed_fields.record(
                new, None, manager=manager, sent=sent or {}, time=meta["creationTimestamp"]
            )
        meta["resourceVersion"] = self._next_rv()
        entry = Entry(new)
        bucket[key] = entry
        self._index_owners(res, key, None, new)
        self._record(res, "ADDED", entry, None)
        if res.kind == "Namespace":
            # kube-controller-manager's serviceaccount controller gives every namespace its
            # "default" ServiceAccount (Pods cannot be admitted into a namespace without it).
            account = {"metadata": {"name": "default", "namespace": meta["name"]}}
            self._create(resolve("serviceaccounts"), account, meta["name"], False, copy=False)
        return entry

    def update(
        self,
        resource: str | Resource,
        obj: dict[str, Any],
        *,
        namespace: str | None = None,
        take_ownership: bool = False,
        manager: str | None = None,
    ) -> dict[str, Any]:
        """Replace an object, as PUT does; a stale ``metadata.resourceVersion`` is a 409.

        ``take_ownership`` and ``manager`` as for :meth:`create`.
        """
        if take_ownership:
            return self._update(resolve(resource), obj, namespace, copy=False).obj
        return copy_object(self._update(resolve(resource), obj, namespace, manager=manager).obj)

    def _update(
        self,
        res: Resource,
        obj: dict[str, Any],
        namespace: str | None,
        *,
        copy: bool = True,
        manager: str | None = None,
    ) -> Entry:
        new = copy_object(obj) if copy else obj
        _check_kind(res, new)
        meta = new.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise errors.invalid(res.kind, "", "metadata.name: Required value")
        if res.namespaced:
            namespace = namespace or meta.get("namespace")
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        key = self._key(res, name, namespace)
        old = self._bucket(res).get(key)
        if old is None:
            raise errors.not_found(res.plural, name, group=res.group)
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != old.obj["metadata"]["resourceVersion"]:
            raise errors.conflict(res.plural, name, group=res.group)
        return self._replace(res, key, old, new, manager=manager, sent=obj)

    def _replace(
        self,
        res: Resource,
        key: ObjectKey,
        old: Entry,
        new: dict[str, Any],
        *,
        manager: str | None = None,
        sent: dict[str, Any] | None = None,
    ) -> Entry:
        meta = new["metadata"]
        old_meta = old.obj["metadata"]
        for kept in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if kept in old_meta:
                meta[kept] = old_meta[kept]
            else:
                meta.pop(kept, None)
        meta.pop("selfLink", None)
        if res.kind in _GENERATION_KINDS:
            generation = int(old_meta.get("generation", 1))
            if new.get("spec") != old.obj.get("spec"):
                generation += 1
            meta["generation"] = generation
        _apply_kind_defaults(res, new)
        if manager is not None:
            managed_fields.record(
                new,
                old_meta.get("managedFields"),
                manager=manager,
                sent=sent or {},
                time=self.clock.timestamp(),
            )
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            # The last finalizer is gone: the pending delete completes now.
            return self._remove(res, key, old)
        meta["resourceVersion"] = self._next_rv()
        entry = Entry(new)
        self._bucket(res)[key] = entry
        self._index_owners(res, key, old.obj, new)
        self._record(res, "MODIFIED", entry, old)
        return entry

    def patch(
        self,
        resource: str | Resource,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        patch_type: str = "merge",
        manager: str | None = None,
    ) -> dict[str, Any]:
        """Apply a ``merge``, ``strategic`` or ``json`` patch, as PATCH does (``manager`` as
        for :meth:`create`; a JSON patch records the fields of no body)."""
        res = resolve(resource)
        old = self.entry(res, name, namespace=namespace)
        try:
            apply = _PATCH_FUNCS[patch_type]
        except KeyError:
            raise ValueError(f"unknown patch type {patch_type!r}") from None
        new = apply(copy_object(old.obj), patch)
        if not isinstance(new, dict):
            raise errors.bad_request("patch did not produce an object")
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise errors.invalid(res.kind, name, "metadata.name: Invalid value: field is immutable")
        meta["name"] = name
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != old.obj["metadata"]["resourceVersion"]:
            raise errors.conflict(res.plural, name, group=res.group)
        _check_kind(res, new)
        key = self._key(res, name, namespace)
        sent = patch if isinstance(patch, dict) else {}
        return copy_object(self._replace(res, key, old, new, manager=manager, sent=sent).obj)

    def delete(
        self,
        resource: str | Resource,
        name: str,
        *,
        namespace: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> dict[str, Any]:
        """Delete as DELETE does: finalizers defer it; dependents and namespace contents go too.

        A namespace first turns ``Terminating`` (``deletionTimestamp`` set, a MODIFIED event),
        as kube-apiserver leaves it for the namespace controller, which here empties it and
        removes it in the same call. ``grace_period_seconds`` (the API's default for a Pod on
        a node is 30) makes a Pod's deletion graceful the same way: MODIFIED with
        ``deletionTimestamp`` = now + grace, then gone once "the kubelet" confirms - at once.
        Returns the object as the DELETE response carries it (the pending state, if any).
        """
        res = resolve(resource)
        key = self._key(res, name, namespace)
        old = self._bucket(res).get(key)
        if old is None:
            raise errors.not_found(res.plural, name, group=res.group)
        meta = old.obj["metadata"]
        graceful = (
            res.kind == "Pod"
            and bool(grace_period_seconds)
            and bool((old.obj.get("spec") or {}).get("nodeName"))
        )
        if meta.get("deletionTimestamp") and (meta.get("finalizers") or graceful):
            return copy_object(old.obj)
        if not (meta.get("finalizers") or res.kind == "Namespace" or graceful):
            return copy_object(self._remove(res, key, old).obj)
        pending = copy_object(old.obj)
        pending_meta = pending["metadata"]
        if res.kind == "Namespace":
            pending_meta["deletionTimestamp"] = self.clock.timestamp()
            pending.setdefault("status", {})["phase"] = "Terminating"
        elif graceful:
            assert grace_period_seconds is not None
            deadline = self.clock.now() + timedelta(seconds=grace_period_seconds)
            pending_meta["deletionTimestamp"] = rfc3339(deadline)
            pending_meta["deletionGracePeriodSeconds"] = grace_period_seconds
        else:
            pending_meta["deletionTimestamp"] = self.clock.timestamp()
            pending_meta["deletionGracePeriodSeconds"] = 0
        pending_meta["resourceVersion"] = self._next_rv()
        entry = Entry(pending)
        self._bucket(res)[key] = entry
        self._record(res, "MODIFIED", entry, old)
        if not meta.get("finalizers"):
            # The namespace controller (or the kubelet) finishes the job.
            self._remove(res, key, entry)
        return copy_object(pending)

    def _remove(self, res: Resource, key: ObjectKey, old: Entry) -> Entry:
        gone = copy_object(old.obj)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        entry = Entry(gone)
        del self._bucket(res)[key]
        self._index_owners(res, key, old.obj, None)
        self._record(res, "DELETED", entry, old)
        uid = gone["metadata"].get("uid")
        # Background garbage collection of dependents, and namespace teardown.
        for dep_key, (dep_ns, dep_name) in sorted(self._owned.pop(uid, set())):
            dep_res = resolve(dep_key)
            if self.exists(dep_res, dep_name, namespace=dep_ns or None):
                self.delete(dep_res, dep_name, namespace=dep_ns or None)
        if res.kind == "Namespace":
            for other in list(self._objects):
                other_res = resolve(other)
                if not other_res.namespaced:
                    continue
                for ns, obj_name in [k for k in self._bucket(other_res) if k[0] == key[1]]:
                    self.delete(other_res, obj_name, namespace=ns)
        return entry

    def _index_owners(
        self, res: Resource, key: ObjectKey, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        for obj, add in ((old, False), (new, True)):
            if obj is None:
                continue
            for ref in obj["metadata"].get("ownerReferences") or ():
                uid = ref.get("uid") if isinstance(ref, dict) else None
                if not uid:
                    continue
                owned = self._owned.setdefault(uid, set())
                if add:
                    owned.add((res.key, key))
                else:
                    owned.discard((res.key, key))

    def load(self, resource: str | Resource, objects: Iterable[dict[str, Any]]) -> int:
        """Create many objects without copying them (the fleet's bulk path: the store takes
        ownership of the dicts); returns how many were stored."""
        res = resolve(resource)
        count = 0
        for obj in objects:
            self._create(res, obj, None, False, copy=False)
            count += 1
        return count


def _check_kind(res: Resource, obj: dict[str, Any]) -> None:
    kind = obj.setdefault("kind", res.kind)
    api_version = obj.setdefault("apiVersion", res.api_version)
    if kind != res.kind or api_version != res.api_version:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) and kind ({kind}) do not match the "
            f"endpoint's {res.api_version} {res.kind}"
        )


def _apply_kind_defaults(res: Resource, obj: dict[str, Any]) -> None:
    try:
        # kube-apiserver decodes and re-encodes every Quantity: clients read canonical forms.
        canonicalize_object(res.kind, obj)
    except QuantityError as exc:
        raise errors.bad_request(
            f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: {exc}'
        ) from None
    if res.kind == "Secret" and "stringData" in obj:
        # stringData is write-only: the API server folds it into data (base64) and drops it.
        string_data = obj.pop("stringData") or {}
        data = obj.setdefault("data", {}) or {}
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        obj["data"] = data
    if res.kind == "Secret":
        obj.setdefault("type", "Opaque")
    elif res.kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        # The NamespaceDefaultLabelName admission (GA in 1.22) labels every namespace with its
        # own name, so `kubernetes.io/metadata.name=x` selects it.
        labels = obj["metadata"].get("labels") or {}
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        obj["metadata"]["labels"] = labels
    elif res.kind == "Pod":
        obj.setdefault("status", {}).setdefault("phase", "Pending")


_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _random_suffix(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice(_SUFFIX_ALPHABET) for _ in range(length))


def _encode_continue(rv: int, start: int, snapshot_id: int) -> str:
    payload = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start, "snap": snapshot_id})
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, int, int]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded))
        return int(data["rv"]), int(data["start"]), int(data["snap"])
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.bad_request(f"invalid continue token: {exc}") from exc
