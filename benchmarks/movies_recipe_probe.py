"""One movies recipe variant, as the search in benchmarks/results/movies_recipes.md ran them: the entry's recipe
with JSON overrides merged in (null deletes a key; "task_weights" sets task weights; fit "patience" = early stopping on
the validation loss, fit "plateau" = ReduceLROnPlateau factor with patience 2, fit "head_bias": "prior"), built by
zoo.recipes.build, fitted on the train split and scored on the test split. Appends one line to movies_recipe_probe.log.

    python -m benchmarks.movies_recipe_probe movies_mmoe '{"encoders": {"title": {"text_kind": "sum"}}}' TAG
"""
import sys, json, time, copy
import mtmm_keras as mk
xtr, ytr = mk.data.load_numpy("movies", split="train")
xte, yte = mk.data.load_numpy("movies", split="test")
import keras, numpy as np
from mtmm_keras.zoo import registry, recipes, evaluation
from mtmm_keras.zoo.training import adapt_normalizers
name = sys.argv[1]; over = json.loads(sys.argv[2]); tag = sys.argv[3] if len(sys.argv) > 3 else ''
r = copy.deepcopy(registry.recipe(name))
def merge(a, b):
    for k, v in b.items():
        if v is None: a.pop(k, None)
        elif isinstance(v, dict) and isinstance(a.get(k), dict) and not v.get("_replace"): merge(a[k], v)
        else: a[k] = {kk: vv for kk, vv in v.items() if kk != '_replace'} if isinstance(v, dict) else v
merge(r, over)
for t in r['tasks']:
    if t['name'] in over.get('task_weights', {}): t['weight'] = over['task_weights'][t['name']]
r.pop('task_weights', None)
x = {m: xtr[m] for m in r['encoders']}; y = {t['name']: ytr[t['name']] for t in r['tasks']}
model = recipes.build(r); adapt_normalizers(model, x)
if r['fit'].get('head_bias') == 'prior':
    for t in r['tasks']:
        lab = y[t['name']].astype('float64'); head = model.get_layer(t['name'])
        if t['loss'] == 'binary_crossentropy':
            p = lab.mean(); b = np.log(p / (1 - p))
        else:
            b = lab.mean()
        k, bias = head.get_weights(); head.set_weights([k, np.full_like(bias, b)])
fit = r['fit']; pat = fit.get('patience', 3)
cb = [keras.callbacks.EarlyStopping(monitor='val_loss', patience=pat, restore_best_weights=True)] + ([keras.callbacks.ReduceLROnPlateau(monitor='val_loss', factor=fit['plateau'], patience=2)] if fit.get('plateau') else [])
t0 = time.time()
with recipes.seeded(fit.get('seed', 0)):
    h = model.fit(x, y, epochs=fit['epochs'], batch_size=fit['batch_size'], validation_split=fit.get('validation_split', .1), shuffle=True, verbose=0, callbacks=cb)
sec = time.time() - t0
m = evaluation.evaluate_model(model, r, {k: xte[k] for k in r['encoders']}, {t['name']: yte[t['name']] for t in r['tasks']})
vl = h.history['val_loss']
line = f"{name} {tag}: rating RMSE {m['rating_rmse']:.4f}, mean AUC {m['mean_auc']:.4f} | epochs {len(vl)} best {int(np.argmin(vl))+1} val_loss {min(vl):.4f} | {sec:.0f}s | " + ' '.join(f"{k.split('_')[0]} {v:.3f}" for k, v in m.items() if k.endswith('_auc') and k != 'mean_auc') + f" | params {model.count_params()} | {json.dumps(over)}"
print(line); open('movies_recipe_probe.log', 'a').write(line + '\n')
