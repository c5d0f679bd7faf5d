#!/usr/bin/env python3
"""Check that two renderings of Souk hold the same objects: the Helm chart's and a kustomize overlay's.

Usage: same-objects.py [--only-in-first KIND/NAME]... A.json B.json   (each kubectl's JSON of the objects:
kubectl create --dry-run=client -o json -f FILE, a List or one object after another)

What is allowed to differ: labels (Helm adds its own), namespaces, the hash suffix kustomize gives a
generated ConfigMap, Helm's checksum annotation, a Secret written as data or as stringData, an
imagePullPolicy left to its default, and the Namespace object (the chart leaves it to --create-namespace).
--only-in-first KIND/NAME names an object that A may hold and B may not, and whose content is not compared:
.ci/k8s passes Secret/souk-keyring, which the chart makes at random (and keeps: lookup) and the overlays never
bring, since a keyring in Git would be everyone's. If B holds it too, it is compared as any other.
Anything else is printed as a unified diff, and the exit status is 1."""
import base64, difflib, json, re, sys

def normal(obj):
    md = obj["metadata"]
    md.pop("namespace", None)
    md.pop("labels", None)
    md["name"] = re.sub(r"^(souk-config)-[a-z0-9]{10}$", r"\1", md["name"])
    if obj["kind"] == "Secret":
        data = obj.pop("data", {}) or {}
        obj["stringData"] = {**{k: base64.b64decode(v).decode() for k, v in data.items()}, **obj.get("stringData", {})}
        obj.pop("type", None)
    tmpl = obj.get("spec", {}).get("template", {})
    if tmpl:
        tmpl.get("metadata", {}).pop("labels", None)
        ann = tmpl.get("metadata", {}).get("annotations", {})
        ann.pop("checksum/config", None)
        for c in tmpl.get("spec", {}).get("containers", []):
            if c.get("imagePullPolicy") == "IfNotPresent":
                del c["imagePullPolicy"]
    text = json.dumps(obj, sort_keys=True)
    text = re.sub(r'"souk-config-[a-z0-9]{10}"', '"souk-config"', text)
    return json.loads(text)

def documents(text):
    dec, i, out = json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return out
        doc, i = dec.raw_decode(text, i)
        out.extend(doc["items"] if doc.get("kind") == "List" else [doc])

def load(path):
    items = documents(open(path).read())
    objs = [normal(o) for o in items if o["kind"] != "Namespace"]
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}

args, only_first = sys.argv[1:], set()
while args and args[0] == "--only-in-first":
    kind, _, name = args[1].partition("/")
    only_first.add((kind, name))
    args = args[2:]
if len(args) != 2:
    sys.exit(__doc__)
a, b = load(args[0]), load(args[1])
for key in only_first:
    if key not in b:
        a.pop(key, None)
bad = 0
for key in sorted(set(a) | set(b)):
    if a.get(key) != b.get(key):
        bad += 1
        left = json.dumps(a.get(key), indent=1, sort_keys=True).splitlines()
        right = json.dumps(b.get(key), indent=1, sort_keys=True).splitlines()
        print("differs: %s %s" % key)
        print("\n".join(difflib.unified_diff(left, right, args[0], args[1], lineterm="", n=2)))
print("%d objects, %d differ" % (len(set(a) | set(b)), bad))
sys.exit(1 if bad else 0)
