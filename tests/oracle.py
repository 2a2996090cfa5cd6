"""An independent float64 NumPy oracle for the scoring tests (no rankcore code inside).

Tolerance policy
----------------
* Logits: the backends accumulate in float32, so a logit may differ from the float64 dot product
  by a relative error of about ``d * 2**-24`` of ``sum |e_i * u_i|``; tests allow ``1e-5`` of it.
* Scores: compared with the float64 softmax of the float64 logits within ``1e-6`` absolute when
  logits are of moderate size (unit-scale embeddings), and with the float64 softmax of the
  backend's own float32 logits within ``1e-6`` otherwise (that isolates the softmax from the dot).
* Order: descending score; equal scores keep input order. Two backends may order two candidates
  differently only when their scores differ by at most 1e-6.
"""
import numpy as np


def logits64(user, emb, bias, cands):
    e = np.asarray(emb, dtype=np.float64)[cands]
    out = e @ np.asarray(user, dtype=np.float64)
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)[cands]
    return out


def dot_scale(user, emb, bias, cands):
    e = np.abs(np.asarray(emb, dtype=np.float64)[cands])
    s = e @ np.abs(np.asarray(user, dtype=np.float64))
    if bias is not None:
        s = s + np.abs(np.asarray(bias, dtype=np.float64)[cands])
    return s


def softmax64(logits):
    logits = np.asarray(logits, dtype=np.float64)
    if logits.size == 0:
        return logits
    e = np.exp(logits - logits.max())
    return e / e.sum()


def check_ranking_order(scores, positions):
    """Scores non-increasing; among equal scores, positions increasing (stable)."""
    scores = np.asarray(scores)
    assert np.all(scores[:-1] >= scores[1:]), "scores are not in descending order"
    ties = scores[:-1] == scores[1:]
    assert np.all(np.asarray(positions)[:-1][ties] < np.asarray(positions)[1:][ties]), \
        "equal scores do not keep input order"
