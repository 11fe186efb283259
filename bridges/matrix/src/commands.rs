//! The bridge's own ad-hoc commands (the session's `re-login` lives with
//! the session, which it rebuilds):
//!
//! * `verify` (gateway): SAS emoji verification of ferry's device with one
//!   of the user's other devices, or with another Matrix user, started from
//!   XMPP or accepted when the other side asked;
//! * `recovery-key` (gateway): imports the account's recovery key (secret
//!   storage): cross-signing keys and the key backup, so older encrypted
//!   messages can be read;
//! * `leave` (room): leaves the Matrix room for good (leaving the MUC only
//!   closes the XMPP view);
//! * `configure` (room): the room's name, topic and encryption.

use std::time::Duration;

use ferry_bridge::{
    Address, BridgeError, CommandCall, CommandReply, CommandScope, CommandSpec, Event, Field,
    FieldKind, Form, RoomExit,
};
use matrix_sdk::encryption::verification::{SasVerification, Verification, VerificationRequest};
use matrix_sdk::ruma::{OwnedDeviceId, OwnedUserId, UserId};

use crate::client::action_error;
use crate::ctx::Ctx;

/// Node of the re-login command.
pub const RELOGIN: &str = "re-login";
/// Node of the verification command.
pub const VERIFY: &str = "verify";
/// Node of the recovery key command.
pub const RECOVERY: &str = "recovery-key";
/// Node of the leave command.
pub const LEAVE: &str = "leave";
/// Node of the room configuration command.
pub const CONFIGURE: &str = "configure";

/// How long one command step waits for the other device.
const STEP_WAIT: Duration = Duration::from_secs(20);

/// The commands the bridge adds.
pub fn specs() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new(RELOGIN, "Log in to Matrix again", CommandScope::Gateway),
        CommandSpec::new(
            VERIFY,
            "Verify this Matrix session (emoji)",
            CommandScope::Gateway,
        ),
        CommandSpec::new(
            RECOVERY,
            "Import your Matrix recovery key",
            CommandScope::Gateway,
        ),
        CommandSpec::new(LEAVE, "Leave this Matrix room", CommandScope::Room),
        CommandSpec::new(CONFIGURE, "Room settings", CommandScope::Room),
    ]
}

/// Runs one step of a bridge command (all but `re-login`).
pub async fn run(ctx: &Ctx, call: CommandCall) -> Result<CommandReply, BridgeError> {
    match call.node.as_str() {
        VERIFY => verify(ctx, call).await,
        RECOVERY => recovery(ctx, call).await,
        LEAVE => leave(ctx, call).await,
        CONFIGURE => configure(ctx, call).await,
        other => Err(BridgeError::not_found(format!("no command {other:?}"))),
    }
}

fn room_target(call: &CommandCall) -> Result<ferry_bridge::RoomId, BridgeError> {
    match &call.target {
        Some(Address::Room(r)) => Ok(r.clone()),
        _ => Err(BridgeError::bad_request("this command works on a room")),
    }
}

async fn leave(ctx: &Ctx, call: CommandCall) -> Result<CommandReply, BridgeError> {
    let id = room_target(&call)?;
    let room = ctx.known_room(&id).await?;
    room.leave()
        .await
        .map_err(|e| action_error("leaving the room", e))?;
    ctx.shared
        .emit(Event::RoomLeft {
            room: id.clone(),
            exit: RoomExit::Left(None),
        })
        .await;
    Ok(CommandReply::done(format!(
        "You left the Matrix room {id}."
    )))
}

async fn configure(ctx: &Ctx, call: CommandCall) -> Result<CommandReply, BridgeError> {
    let id = room_target(&call)?;
    let room = ctx.joined_room(&id).await?;
    let encrypted = room.encryption_state().is_encrypted();
    if call.stage.is_none() {
        let mut form = Form::new(format!("Settings of {id}"))
            .field(Field::text("name", "Name").value(room.name().unwrap_or_default()))
            .field(
                Field::new("topic", FieldKind::TextMulti)
                    .label("Topic")
                    .values(
                        room.topic()
                            .unwrap_or_default()
                            .lines()
                            .map(str::to_owned)
                            .collect::<Vec<_>>(),
                    ),
            );
        form = if encrypted {
            form.field(
                Field::new("encryption-note", FieldKind::Fixed)
                    .value("This room is end-to-end encrypted (this cannot be undone)."),
            )
        } else {
            form.field(Field::boolean(
                "encrypted",
                "End-to-end encryption (cannot be undone)",
                false,
            ))
        };
        return Ok(CommandReply::Form {
            form,
            stage: "apply".into(),
            last: true,
        });
    }
    let mut changed = Vec::new();
    if let Some(name) = call.values.get("name")
        && room.name().as_deref() != Some(name)
    {
        room.set_name(name.to_owned())
            .await
            .map_err(|e| action_error("renaming the room", e))?;
        changed.push("name");
    }
    if let Some(lines) = call.values.all("topic") {
        let topic = lines.join("\n");
        if room.topic().unwrap_or_default() != topic {
            room.set_room_topic(&topic)
                .await
                .map_err(|e| action_error("changing the topic", e))?;
            changed.push("topic");
        }
    }
    if !encrypted && call.values.bool("encrypted") == Some(true) {
        room.enable_encryption()
            .await
            .map_err(|e| action_error("enabling encryption", e))?;
        changed.push("encryption");
    }
    Ok(CommandReply::done(if changed.is_empty() {
        "Nothing changed.".to_owned()
    } else {
        format!("Changed: {}.", changed.join(", "))
    }))
}

async fn recovery(ctx: &Ctx, call: CommandCall) -> Result<CommandReply, BridgeError> {
    if call.stage.is_none() {
        return Ok(CommandReply::Form {
            form: Form::new("Import your Matrix recovery key")
                .instructions(
                    "The recovery key (or security key) lets ferry read your cross-signing \
                     keys and your key backup, so it can decrypt older messages and is \
                     trusted by your other devices.",
                )
                .field(Field::private("key", "Recovery key").required()),
            stage: "import".into(),
            last: true,
        });
    }
    let key = call
        .values
        .get("key")
        .ok_or_else(|| BridgeError::bad_request("give the recovery key"))?;
    ctx.client
        .encryption()
        .recovery()
        .recover(key.trim())
        .await
        .map_err(|e| BridgeError::bad_request(format!("the recovery key was not accepted: {e}")))?;
    Ok(CommandReply::done(
        "Recovery key accepted: ferry's device is now cross-signed and reads your key backup.",
    ))
}

/// One step of SAS verification. Stages: `start` (a target was chosen),
/// `wait <user> <flow>` (waiting for the other side), `confirm <user>
/// <flow>` (emojis shown).
async fn verify(ctx: &Ctx, call: CommandCall) -> Result<CommandReply, BridgeError> {
    ctx.shared.verifying();
    let stage = call.stage.clone().unwrap_or_default();
    let mut words = stage.split(' ');
    match words.next().unwrap_or("") {
        "" => verify_choose(ctx).await,
        "start" => {
            let choice = call
                .values
                .get("who")
                .ok_or_else(|| BridgeError::bad_request("choose what to verify"))?
                .trim()
                .to_owned();
            let request = verify_start(ctx, &choice).await?;
            let user = request.other_user_id().to_owned();
            let flow = request.flow_id().to_owned();
            verify_progress(ctx, &user, &flow).await
        }
        "wait" | "confirm" => {
            let (Some(user), Some(flow)) = (words.next(), words.next()) else {
                return Err(BridgeError::bad_request(
                    "this verification step is malformed",
                ));
            };
            let user = UserId::parse(user)
                .map_err(|_| BridgeError::bad_request("this verification step is malformed"))?;
            if stage.starts_with("confirm") {
                return verify_confirm(ctx, &user, flow, &call).await;
            }
            verify_progress(ctx, &user, flow).await
        }
        _ => Err(BridgeError::bad_request("unknown verification step")),
    }
}

async fn verify_choose(ctx: &Ctx) -> Result<CommandReply, BridgeError> {
    let own = ctx.own().to_owned();
    let mut who = Field::new("who", FieldKind::ListSingle)
        .label("What to verify")
        .desc("Pick a request or a device, or type a Matrix user id (@bob:example.org)")
        .required();
    who.open = true;
    let requests = ctx.shared.mem().verification_requests.clone();
    for (user, flow) in requests.iter().rev() {
        if let Some(r) = ctx
            .client
            .encryption()
            .get_verification_request(user, flow)
            .await
            && !r.is_done()
            && !r.is_cancelled()
        {
            who = who.option(
                format!("Accept the request from {user}"),
                format!("request {user} {flow}"),
            );
        }
    }
    if let Ok(devices) = ctx.client.encryption().get_user_devices(&own).await {
        for d in devices.devices() {
            if d.device_id() == ctx.account.device_id {
                continue;
            }
            let name = d.display_name().unwrap_or("unnamed");
            let state = if d.is_verified() {
                "verified"
            } else {
                "not verified"
            };
            who = who.option(
                format!("My device {name} ({}, {state})", d.device_id()),
                format!("device {}", d.device_id()),
            );
        }
    }
    if let Some(first) = who.options.first().map(|o| o.value.clone()) {
        who = who.value(first);
    }
    Ok(CommandReply::Form {
        form: Form::new("Verify this Matrix session")
            .instructions(
                "Ferry compares seven emojis with the other device. Keep that device at hand: \
                 it will ask you to accept.",
            )
            .field(who),
        stage: "start".into(),
        last: false,
    })
}

async fn verify_start(ctx: &Ctx, choice: &str) -> Result<VerificationRequest, BridgeError> {
    let enc = ctx.client.encryption();
    let fail = |e: &dyn std::fmt::Display| {
        BridgeError::remote(format!("Matrix: starting the verification failed: {e}"))
    };
    if let Some(rest) = choice.strip_prefix("request ") {
        let (user, flow) = rest
            .split_once(' ')
            .ok_or_else(|| BridgeError::bad_request("malformed request choice"))?;
        let user = UserId::parse(user).map_err(|e| fail(&e))?;
        let request = enc
            .get_verification_request(&user, flow)
            .await
            .ok_or_else(|| BridgeError::not_found("that verification request is gone"))?;
        request.accept().await.map_err(|e| fail(&e))?;
        return Ok(request);
    }
    if let Some(device) = choice.strip_prefix("device ") {
        let device: OwnedDeviceId = device.trim().into();
        let d = enc
            .get_device(ctx.own(), &device)
            .await
            .map_err(|e| fail(&e))?
            .ok_or_else(|| BridgeError::not_found(format!("no device {device}")))?;
        return d.request_verification().await.map_err(|e| fail(&e));
    }
    let user = UserId::parse(choice.trim_start_matches("user ").trim()).map_err(|_| {
        BridgeError::bad_request(format!(
            "{choice:?} is neither a listed choice nor a Matrix user id"
        ))
    })?;
    let identity = enc
        .request_user_identity(&user)
        .await
        .map_err(|e| fail(&e))?
        .ok_or_else(|| {
            BridgeError::not_found(format!("{user} has no cross-signing identity to verify"))
        })?;
    identity.request_verification().await.map_err(|e| fail(&e))
}

/// Moves a verification forward as far as it goes within one step.
async fn verify_progress(
    ctx: &Ctx,
    user: &OwnedUserId,
    flow: &str,
) -> Result<CommandReply, BridgeError> {
    let enc = ctx.client.encryption();
    let deadline = tokio::time::Instant::now() + STEP_WAIT;
    loop {
        if let Some(Verification::SasV1(sas)) = enc.get_verification(user, flow).await {
            if let Some(reply) = sas_step(&sas, user, flow).await? {
                return Ok(reply);
            }
        } else if let Some(request) = enc.get_verification_request(user, flow).await {
            if request.is_cancelled() {
                return Ok(CommandReply::done(cancelled(request.cancel_info())));
            }
            if request.is_ready() {
                request.start_sas().await.map_err(|e| {
                    BridgeError::remote(format!(
                        "Matrix: starting the emoji comparison failed: {e}"
                    ))
                })?;
            }
        } else {
            return Err(BridgeError::not_found("this verification is gone"));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(CommandReply::Form {
                form: Form::new("Waiting for the other side").field(
                    Field::new("note", FieldKind::Fixed).value(
                        "The other device has not answered yet. Accept the request there, then \
                         submit this form to go on.",
                    ),
                ),
                stage: format!("wait {user} {flow}"),
                last: false,
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn cancelled(info: Option<matrix_sdk::encryption::verification::CancelInfo>) -> String {
    match info {
        Some(i) => format!("The verification was cancelled: {}", i.reason()),
        None => "The verification was cancelled.".into(),
    }
}

/// What to show for a SAS flow now, or None to keep waiting.
async fn sas_step(
    sas: &SasVerification,
    user: &UserId,
    flow: &str,
) -> Result<Option<CommandReply>, BridgeError> {
    if sas.is_cancelled() {
        return Ok(Some(CommandReply::done(cancelled(sas.cancel_info()))));
    }
    if sas.is_done() {
        return Ok(Some(CommandReply::done(format!("Verified with {user}."))));
    }
    if !sas.we_started() && !sas.started_from_request() {
        sas.accept()
            .await
            .map_err(|e| BridgeError::remote(format!("Matrix: accepting failed: {e}")))?;
    } else if sas.started_from_request() && !sas.we_started() {
        // The other side started SAS on a request: accept it (a no-op once
        // accepted).
        let _ = sas.accept().await;
    }
    if sas.can_be_presented() {
        let Some(emojis) = sas.emoji() else {
            return Ok(Some(CommandReply::done(
                "The other device cannot compare emojis; use it to compare numbers instead.",
            )));
        };
        let shown: Vec<String> = emojis
            .iter()
            .map(|e| format!("{} {}", e.symbol, e.description))
            .collect();
        let form = Form::new("Compare these emojis")
            .instructions("Do the same emojis, in the same order, show on the other device?")
            .field(Field::new("emojis", FieldKind::Fixed).values(shown))
            .field(
                Field::new("match", FieldKind::ListSingle)
                    .label("They match")
                    .option("Yes, they match", "yes")
                    .option("No, they differ", "no")
                    .required(),
            );
        return Ok(Some(CommandReply::Form {
            form,
            stage: format!("confirm {user} {flow}"),
            last: true,
        }));
    }
    Ok(None)
}

async fn verify_confirm(
    ctx: &Ctx,
    user: &UserId,
    flow: &str,
    call: &CommandCall,
) -> Result<CommandReply, BridgeError> {
    let Some(Verification::SasV1(sas)) = ctx.client.encryption().get_verification(user, flow).await
    else {
        return Err(BridgeError::not_found("this verification is gone"));
    };
    if call.values.get("match") != Some("yes") {
        sas.mismatch()
            .await
            .map_err(|e| BridgeError::remote(format!("Matrix: cancelling failed: {e}")))?;
        return Ok(CommandReply::done(
            "Cancelled: the emojis differ, so the devices were not verified.",
        ));
    }
    sas.confirm()
        .await
        .map_err(|e| BridgeError::remote(format!("Matrix: confirming failed: {e}")))?;
    let deadline = tokio::time::Instant::now() + STEP_WAIT;
    while tokio::time::Instant::now() < deadline {
        if sas.is_done() {
            return Ok(CommandReply::done(format!(
                "Verified: ferry's device and {user} now trust each other."
            )));
        }
        if sas.is_cancelled() {
            return Ok(CommandReply::done(cancelled(sas.cancel_info())));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(CommandReply::done(
        "Confirmed here; the other device has not confirmed yet. The verification completes \
         when it does.",
    ))
}
