"""Example: ingest a folder of images into a running `percept serve`, then
search it by text.  python3 example.py 127.0.0.1:7700 ./photos "a red car" """
import os
import sys

from percept_client import Client, PerceptError

addr, folder, query = sys.argv[1], sys.argv[2], sys.argv[3]
with Client(addr, token=os.environ.get("PERCEPT_TOKEN")) as c:
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            try:
                r = c.ingest(data=f.read(), uri=name)
                print("%-30s %s id=%d" % (name, r["outcome"], r["id"]))
            except PerceptError as e:
                print("%-30s skipped: %s" % (name, e))
    for rank, hit in enumerate(c.search(text=query, k=5), 1):
        print("%d. %.4f  %s" % (rank, hit["score"], hit["uri"]))
