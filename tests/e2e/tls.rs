//! TLS at the endpoints: a service given a certificate speaks only TLS; with a client CA
//! it admits only callers presenting a certificate that CA signed (mutual TLS); the
//! kubelet's plain-text health port answers; `dtksctl` and the services' own clients
//! reach it over `https://`.

use std::path::{Path, PathBuf};

use dtks_e2e::{Stack, authed};
use dtks_platform::auth::Role;
use dtks_platform::config::TlsConfig;
use dtks_proto::verivali::v1::ListCasesRequest;
use dtks_proto::verivali::v1::verivali_service_client::VerivaliServiceClient;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl.
fn mint(dir: &Path) -> anyhow::Result<()> {
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=DTKS test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat())?;
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        ),
        (
            "client",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        ),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext)?;
        run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN=dtks-{name}"),
            ],
        ]
        .concat())?;
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ])?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_with_a_certificate_speaks_only_tls_and_asks_callers_for_theirs()
-> anyhow::Result<()> {
    let dir: PathBuf = std::env::temp_dir().join(format!("dtks-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    mint(&dir)?;
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let read = |name: &str| std::fs::read_to_string(dir.join(name));

    let mut stack = Stack::start_services(super::REGISTRY, &["verivali"], &[]).await?;
    let health_port = dtks_e2e::free_port();
    let health_addr = format!("127.0.0.1:{health_port}");
    let client = TlsConfig {
        ca: Some(read("ca.crt")?),
        cert: Some(read("client.crt")?),
        key: Some(read("client.key")?.into()),
        ..Default::default()
    };
    stack.tls.insert("verivali", client.clone());
    let (cert, key, ca) = (file("server.crt"), file("server.key"), file("ca.crt"));
    stack
        .restart(
            "verivali",
            &[
                ("DTKS_TLS__CERT_FILE", &cert),
                ("DTKS_TLS__KEY_FILE", &key),
                ("DTKS_TLS__CLIENT_CA_FILE", &ca),
                ("DTKS_TLS__HEALTH_ADDR", &health_addr),
            ],
        )
        .await?;
    let token = stack.token(Role::ProvinceOfficer, "32");
    let query = || {
        authed(
            ListCasesRequest {
                region_code: "32".into(),
                ..Default::default()
            },
            &token,
        )
    };

    // Whether a call to `url` with `tls` is answered.
    let answered = |url: String, tls: TlsConfig| {
        let request = query();
        async move {
            let channel = dtks_platform::grpc::endpoint(&url, &tls)?.connect().await?;
            VerivaliServiceClient::new(channel)
                .list_cases(request)
                .await?;
            anyhow::Ok(())
        }
    };
    let url = stack.endpoint("verivali");
    // With the CA and a client certificate: served.
    answered(url.clone(), client.clone()).await?;
    // Plain text to the TLS port: no answer.
    let plain = url.replace("https://", "http://");
    assert!(
        answered(plain, TlsConfig::default()).await.is_err(),
        "plain text was answered"
    );
    // TLS without a client certificate: refused in the handshake.
    let anonymous = TlsConfig {
        ca: client.ca.clone(),
        ..Default::default()
    };
    assert!(
        answered(url.clone(), anonymous).await.is_err(),
        "a caller without a certificate was answered"
    );
    // A server certificate from another CA is not trusted by the client.
    let stranger = TlsConfig {
        ca: Some(read("client.crt")?),
        ..client.clone()
    };
    assert!(
        answered(url.clone(), stranger).await.is_err(),
        "an untrusted server was accepted"
    );

    // The probes' port: health alone, in plain text.
    let probe = tonic::transport::Endpoint::from_shared(format!("http://{health_addr}"))?
        .connect()
        .await?;
    let health = tonic_health::pb::health_client::HealthClient::new(probe.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let refused = VerivaliServiceClient::new(probe)
        .list_cases(query())
        .await
        .expect_err("only health on the probes' port");
    assert_eq!(refused.code(), tonic::Code::Unimplemented);

    // dtksctl over https with the CA and its certificate; without the CA it fails.
    let admin = stack.token(Role::PusdatinAdmin, "");
    let args = ["officer", "list", "--inactive"];
    let (code, out, err) = stack
        .dtksctl_with_env(
            &admin,
            &[
                ("DTKS_TLS__CA_FILE", ca.as_str()),
                ("DTKS_TLS__CERT_FILE", &file("client.crt")),
                ("DTKS_TLS__KEY_FILE", &file("client.key")),
            ],
            &args,
        )
        .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("subject\trole"), "{out}");
    let (code, _, err) = stack.dtksctl(&admin, &args).await?;
    assert_ne!(code, 0, "{err}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
