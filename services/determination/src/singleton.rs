//! Only one determination at a time. In a Kubernetes cluster the run first takes a
//! `coordination.k8s.io/v1` Lease (through `kube`), so that a second replica does not
//! even start reading; everywhere, the determination's transaction also holds a
//! PostgreSQL advisory lock, so two runs against one database can never both write.
//!
//! The Lease follows the convention of Kubernetes leader election: a holder, the time it
//! last renewed, and a duration after which an unrenewed lease is free. Taking it over
//! replaces the object at the resource version read, so of two replicas racing for an
//! expired lease the API server lets exactly one win (the other gets 409 Conflict).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// A named Lease in one namespace, held as `holder`.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    holder: String,
    duration: Duration,
}

/// Whether we hold the lease, or who does.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    Held,
    HeldBy(String),
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaseLock {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        holder: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            holder: holder.to_owned(),
            duration,
        }
    }

    /// In a pod (`KUBERNETES_SERVICE_HOST` set): the lease `dtks-determination` in the
    /// pod's namespace, held as the pod's name. Elsewhere: none.
    pub async fn in_cluster() -> anyhow::Result<Option<Self>> {
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            return Ok(None);
        }
        let client = Client::try_default().await?;
        let namespace = client.default_namespace().to_owned();
        let holder = std::env::var("HOSTNAME").unwrap_or_else(|_| "determination".to_owned());
        Ok(Some(Self::new(
            client,
            &namespace,
            "dtks-determination",
            &holder,
            Duration::from_secs(300),
        )))
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.holder.clone()),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Takes the lease (creating it, taking over a free or expired one, or renewing our
    /// own), or answers who holds it.
    pub async fn acquire(&self, now: Timestamp) -> Result<Taken, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Taken::Held),
                Err(e) if conflict(&e) => Ok(Taken::HeldBy("another replica".to_owned())),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.holder;
        let expires = spec
            .renew_time
            .as_ref()
            .map(|t| t.0.as_second() + i64::from(spec.lease_duration_seconds.unwrap_or(0)));
        let live = !holder.is_empty() && expires.is_some_and(|e| e > now.as_second());
        if live && !ours {
            return Ok(Taken::HeldBy(holder));
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.spec(now, acquired, transitions));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Taken::Held),
            Err(e) if conflict(&e) => Ok(Taken::HeldBy("another replica".to_owned())),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease back if we still hold it.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.holder.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Err(e) if !conflict(&e) => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;
    use tower_test::mock;

    const NOW: i64 = 1_795_000_000;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).expect("time")
    }

    fn lease(holder: &str, renewed: i64, version: &str) -> serde_json::Value {
        let renewed = Timestamp::from_second(renewed).expect("time");
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": "dtks-determination", "namespace": "dtks", "resourceVersion": version },
            "spec": {
                "holderIdentity": holder,
                "renewTime": MicroTime(renewed),
                "acquireTime": MicroTime(renewed),
                "leaseDurationSeconds": 300,
                "leaseTransitions": 3
            }
        })
    }

    fn respond(status: u16, body: &serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("response")
    }

    fn not_found() -> serde_json::Value {
        serde_json::json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "leases.coordination.k8s.io \"dtks-determination\" not found", "reason": "NotFound", "code": 404 })
    }

    fn conflict() -> serde_json::Value {
        serde_json::json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "the object has been modified", "reason": "Conflict", "code": 409 })
    }

    /// Answers the server's next request with `status` and `body`.
    async fn reply(
        server: &mut mock::Handle<Request<Body>, Response<Body>>,
        status: u16,
        body: serde_json::Value,
    ) {
        let (_, send) = server.next_request().await.expect("a request");
        send.send_response(respond(status, &body));
    }

    async fn body_of(request: Request<Body>) -> serde_json::Value {
        let bytes = request.into_body().collect_bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("json body")
    }

    /// A lock on a mocked API server, and the server's side of it: each expected
    /// request is checked and answered in order.
    fn lock() -> (LeaseLock, mock::Handle<Request<Body>, Response<Body>>) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "dtks");
        let lock = LeaseLock::new(
            client,
            "dtks",
            "dtks-determination",
            "determination-0",
            Duration::from_secs(300),
        );
        (lock, handle)
    }

    /// The lock, with `script` playing the API server on a task of its own (await the
    /// task to see its assertions hold).
    fn serve<F>(
        script: impl FnOnce(mock::Handle<Request<Body>, Response<Body>>) -> F,
    ) -> (LeaseLock, tokio::task::JoinHandle<()>)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (lock, server) = lock();
        (lock, tokio::spawn(script(server)))
    }

    const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/dtks/leases/dtks-determination";

    #[tokio::test]
    async fn no_lease_yet_is_created_with_us_as_holder() {
        let (lock, api) = serve(|mut server| async move {
            let (request, send) = server.next_request().await.expect("GET");
            assert_eq!(
                (request.method(), request.uri().path()),
                (&Method::GET, PATH)
            );
            send.send_response(respond(404, &not_found()));
            let (request, send) = server.next_request().await.expect("POST");
            assert_eq!(request.method(), Method::POST);
            assert_eq!(
                request.uri().path(),
                "/apis/coordination.k8s.io/v1/namespaces/dtks/leases"
            );
            let body = body_of(request).await;
            assert_eq!(body["spec"]["holderIdentity"], "determination-0");
            assert_eq!(body["spec"]["leaseDurationSeconds"], 300);
            send.send_response(respond(201, &body));
        });
        assert_eq!(lock.acquire(now()).await.expect("acquire"), Taken::Held);
        api.await.expect("server");
    }

    #[tokio::test]
    async fn a_live_lease_of_another_replica_is_left_alone() {
        let (lock, api) = serve(|mut server| async move {
            reply(&mut server, 200, lease("determination-1", NOW - 10, "7")).await;
        });
        assert_eq!(
            lock.acquire(now()).await.expect("acquire"),
            Taken::HeldBy("determination-1".to_owned())
        );
        api.await.expect("server");
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_at_the_version_read() {
        let (lock, api) = serve(|mut server| async move {
            reply(&mut server, 200, lease("determination-1", NOW - 301, "7")).await;
            let (request, send) = server.next_request().await.expect("PUT");
            assert_eq!(
                (request.method(), request.uri().path()),
                (&Method::PUT, PATH)
            );
            let body = body_of(request).await;
            assert_eq!(body["metadata"]["resourceVersion"], "7");
            assert_eq!(body["spec"]["holderIdentity"], "determination-0");
            assert_eq!(body["spec"]["leaseTransitions"], 4);
            send.send_response(respond(200, &body));
        });
        assert_eq!(lock.acquire(now()).await.expect("acquire"), Taken::Held);
        api.await.expect("server");
    }

    #[tokio::test]
    async fn losing_the_race_for_an_expired_lease_is_a_refusal_not_an_error() {
        let (lock, api) = serve(|mut server| async move {
            reply(&mut server, 200, lease("determination-1", NOW - 301, "7")).await;
            reply(&mut server, 409, conflict()).await;
        });
        assert!(matches!(
            lock.acquire(now()).await.expect("acquire"),
            Taken::HeldBy(_)
        ));
        api.await.expect("server");
    }

    #[tokio::test]
    async fn release_clears_our_hold_and_only_ours() {
        let (lock, api) = serve(|mut server| async move {
            reply(&mut server, 200, lease("determination-0", NOW - 5, "8")).await;
            let (request, send) = server.next_request().await.expect("PUT");
            let body = body_of(request).await;
            assert!(
                body["spec"]
                    .get("holderIdentity")
                    .is_none_or(|h| h.is_null())
            );
            send.send_response(respond(200, &body));
            // A second release finds another holder and leaves the lease alone.
            reply(&mut server, 200, lease("determination-1", NOW, "9")).await;
        });
        lock.release().await.expect("release");
        lock.release().await.expect("release");
        api.await.expect("server");
    }
}
