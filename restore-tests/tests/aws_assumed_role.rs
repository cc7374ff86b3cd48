//! An S3 location reached through an assumed role (`role_arn=` on the
//! location): the agent asks STS (moto's) for the role's credentials with
//! those of the default chain, and what it writes lands in the role's
//! account. moto keeps accounts apart, so the default account does not
//! even see the bucket: the role, not the default credentials, was used.

use lifeboat_restore_tests::{agent, cache_dir, fails, ok, services, unique, write_key};

/// `default:NAME` and `role:NAME` for every bucket each account lists, by boto3.
fn buckets_by_account(endpoint: &str, role: &str) -> String {
    let script = format!(
        "import boto3\n\
         kw = dict(endpoint_url='{endpoint}', region_name='us-east-1')\n\
         c = boto3.client('sts', **kw).assume_role(RoleArn='{role}', RoleSessionName='check')['Credentials']\n\
         role = boto3.client('s3', aws_access_key_id=c['AccessKeyId'], aws_secret_access_key=c['SecretAccessKey'], aws_session_token=c['SessionToken'], **kw)\n\
         for who, s3 in (('default', boto3.client('s3', **kw)), ('role', role)):\n\
         \x20   print(' '.join(who + ':' + b['Name'] for b in s3.list_buckets()['Buckets']))\n"
    );
    let out = std::process::Command::new(cache_dir().join("venv/bin/python")).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_location_through_an_assumed_role() {
    services();
    let endpoint = std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let key = scratch.path().join("key");
    write_key(&key);
    let key = key.to_str().unwrap();
    let bucket = unique("role-bucket");
    let role = "arn:aws:iam::222222222222:role/lifeboat-agent";
    let as_role = format!("s3://{bucket}/cells?endpoint={endpoint}&role_arn={role}");
    let as_default = format!("s3://{bucket}/cells?endpoint={endpoint}");

    ok(&agent(&["repo", "init", "--repo", &as_role, "--key-file", key], &[]));
    let files = scratch.path().join("etc");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("payments.conf"), "max_connections = 300\n").unwrap();
    ok(&agent(&["files", "backup", "--repo", &as_role, "--key-file", key, "--cell", "c1", files.to_str().unwrap()], &[]));
    let listed = ok(&agent(&["repo", "ls", "--repo", &as_role, "--key-file", key, "--output", "json"], &[]));
    assert!(listed.contains("c1"), "{listed}");
    let verified = ok(&agent(&["repo", "verify", "--repo", &as_role, "--key-file", key], &[]));
    assert!(!verified.is_empty());

    // The bucket is the role's account's, not the default one's (moto keeps
    // accounts apart in its listings; boto3, beside moto, is the reference).
    let owners = buckets_by_account(&endpoint, role);
    assert!(owners.contains(&format!("role:{bucket}")) && !owners.contains(&format!("default:{bucket}")), "{owners}");

    let err = fails(&agent(&["repo", "ls", "--repo", &format!("{as_default}&role_arn=lifeboat"), "--key-file", key], &[]));
    assert!(err.contains("role_arn must be a role's ARN"), "{err}");
}
