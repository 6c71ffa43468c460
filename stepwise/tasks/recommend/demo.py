"""`stepwise demo --app recommend`: a film club's recommender in about a minute — train, recommend, a new film.

The catalogue (films.tsv) is a fictional film club's, written by the team: 48 films in six genres, each with
a one-line description, and one new film nobody has watched yet. The log (viewings.tsv) holds 120 members
who each keep to one favourite genre with an occasional film of another. The demo trains the two towers on
the bundled MiniLM, then recommends for a science-fiction fan and a food-documentary fan; the new film can
only be found by its text.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from stepwise.tasks.recommend.task import RecommendTask

USERS = ("u001", "u002")  # a science-fiction fan, a food-documentary fan
NEW_ITEM = "m49"


def _data(name: str) -> Path:
    return Path(str(resources.files("stepwise.demo") / name))


def run_recommend_demo(out: str | Path | None = None, quiet: bool = False) -> dict[str, Any]:
    from stepwise.recipes.finetune import train
    from stepwise.tasks.recommend.recommender import Recommender

    out = Path(out or "runs/demo-recommend")
    run = train(task=RecommendTask.name, interactions=str(_data("viewings.tsv")), items=str(_data("films.tsv")),
                out=str(out), epochs=2, batch_size=16, examples_per_user=3, quiet=quiet, overwrite=True)
    recommender = Recommender.open(out)
    lists = {user: recommender.recommend(user=user, k=5, exclude_seen=True) for user in USERS}
    new_rank = {user: next((n for n, r in enumerate(recommender.recommend(user=user, k=49, exclude_seen=True), 1)
                            if r["item"] == NEW_ITEM), None) for user in USERS}
    if not quiet:
        steps, fusion = run.results["steps"], run.results["second_step"]
        print(f"trained in {run.results['train']['seconds']:.0f} s; test NDCG@10 / HR@10 over "
              f"{run.results['data']['items']} films: " + ", ".join(
                  f"{name} {100 * steps[key]['test']['ndcg@10']:.1f} / {100 * steps[key]['test']['hr@10']:.1f}"
                  for key, name in (("two_tower", "two towers"), ("collaborative", "co-occurrence"),
                                    ("fused", f"fused (weight {fusion['weight']:g})"))))
        for user, records in lists.items():
            history = [recommender.texts[recommender.row[i]].split(".")[0] for i in recommender.users[user][-3:]]
            print(f"\n{user} recently watched: {'; '.join(reversed(history))}")
            for r in records:
                mark = "   <- new: nobody has watched it yet" if r["item"] == NEW_ITEM else ""
                print(f"  {r['item']}  {r['score']:6.2f}  {r['text'][:70]}{mark}")
            print(f"  (the new film {NEW_ITEM} ranks {new_rank[user]} for {user})")
        print(f"\ntry: stepwise recommend {out} --history m08,m05 --k 3 --exclude-seen")
    return {"run": run.results, "recommendations": lists, "new_item_rank": new_rank}
