"""Glossary: one word per concept, the same in code, API and docs.

alert
    One entry of an Alertmanager webhook's `alerts[]` (or one outlier the detector finds): a
    label set with a fingerprint, a status and `startsAt`. It is what arrives, not what is kept.

episode
    One firing of one alert, from `startsAt` until it resolves; identity (group, fingerprint,
    starts_at). Kept as the `Anomaly` document in the `anomalies` collection and handed between
    stages as `domain.Signal` (as `domain.Episode` once stored: the signal with its key and
    incident); the seed's `/anomalies` route lists episodes.

incident
    The episodes of one Alertmanager group (identity: receiver + groupKey), analysed once and
    notified on one thread. `Incident` document, `incidents` collection, `/api/v1/incidents`.

analysis
    A root-cause analysis of one incident; the newest is current. `domain.Analysis`, stored as
    the `Rca` document in the seed's `rca` collection through `store.rca.AnalysisStore`; served
    at `/api/v1/incidents/{id}/analysis`, listed at the seed's `/rca` (alias `/api/v1/rca`),
    re-run by `POST .../reanalyse` (alias `.../analyze`).

notification
    One message about one incident event (firing, resolved, analysis, digest) to one channel:
    an outbox row, `Notification` document, `notifications` collection, `/api/v1/notifications`.

delivery
    One webhook POST as Alertmanager sent it, kept raw until processed: `Delivery` document,
    `deliveries` collection, `/api/v1/deliveries`. Only this; a notification is never called a
    delivery, and a channel "send" is a notification attempt.

target
    A Prometheus server the outlier detector polls (PROM_URL plus `/api/v1/targets`): `Target`
    document, `targets` collection.

The seed's names stay as aliases so existing clients keep working: `/anomalies` and the
`Anomaly` document mean episode, `/rca`, `Rca` and the `rca` collection mean analysis. Renaming
the documents and collections needs a data migration and is left to the store redesign.
"""
