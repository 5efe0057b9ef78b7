//! `/people`: the gallery over HTTP (list, enroll from photos or camera shots, rename, remove,
//! add or drop a shot), and the guided camera shots of the web UI. Writes take the gallery's
//! lock and commit atomically, as the CLI's do, so a concurrent `facegate enroll` is never lost.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::upload::{self, Upload};
use super::{blocking, ApiError, ApiResult, Shared};
use crate::imaging::photo::Photo;
use crate::recognize::enrollment::{self, Shot};
use crate::serve::{lock, App};
use crate::store::gallery::{self, Gallery, Person, WriteLock};

/// Photos a person may be created from in one request.
const MAX_PHOTOS: usize = 10;

#[derive(Serialize)]
pub struct PersonJson {
    id: String,
    name: String,
    enrolled_unix: u64,
    shots: usize,
    shot_urls: Vec<String>,
    /// Faces recorded as not this person ("this is not NAME").
    negatives: usize,
    /// What enrolling found doubtful (a shot that resembles the others only weakly), or what
    /// a correction could not settle.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    /// After "this is not NAME": NAME's shots that look like the face.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    suspects: Vec<Suspect>,
}

impl PersonJson {
    pub fn of(p: &Person) -> PersonJson {
        PersonJson {
            id: p.entry.id.clone(),
            name: p.entry.name.clone(),
            enrolled_unix: p.entry.enrolled_unix,
            shots: p.entry.shots,
            negatives: p.entry.negatives,
            warnings: Vec::new(),
            suspects: Vec::new(),
            shot_urls: (0..p.entry.crops.len())
                .map(|k| format!("/api/v1/people/{}/shots/{k}.png", p.entry.id))
                .collect(),
        }
    }
}

/// Runs a change under the gallery's lock, on the gallery as committed now.
pub fn change<T>(
    app: &App,
    edit: impl FnOnce(&mut Gallery, &WriteLock) -> ApiResult<T>,
) -> ApiResult<T> {
    let write_lock =
        Gallery::lock(&app.gallery_dir).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut g = Gallery::open(&app.gallery_dir, &app.model_info)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    edit(&mut g, &write_lock)
}

/// What the gallery refused after the handler's own checks of the request: the disk, a lock, a
/// damaged gallery. Not the client's doing, so 500.
fn gallery_error(e: gallery::GalleryError) -> ApiError {
    ApiError::internal(e.to_string())
}

fn person_or_404<'a>(g: &'a Gallery, id: &str) -> ApiResult<&'a Person> {
    g.person(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "nobody with id '{}' is enrolled",
            crate::support::terminal::escape(id)
        ))
    })
}

fn check_new_name(g: &Gallery, name: &str) -> ApiResult<()> {
    gallery::validate_name(name).map_err(ApiError::bad)?;
    if let Some(p) = g
        .people()
        .iter()
        .find(|p| gallery::same_name(&p.entry.name, name))
    {
        let spelled = if p.entry.name == name {
            String::new()
        } else {
            format!(" as '{}'", p.entry.name)
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("'{name}' is already enrolled{spelled}"),
        ));
    }
    Ok(())
}

/// Enrolls `name` from checked shots (the gallery write of every way in). The answer warns when
/// the access rules bound that name to someone else: the new person is not granted by them.
pub fn enroll(app: &App, name: &str, shots: Vec<Shot>) -> ApiResult<PersonJson> {
    let mut person = change(app, |g, write_lock| {
        check_new_name(g, name)?;
        let crops: Vec<Vec<u8>> = shots.iter().map(|s| s.png.clone()).collect();
        let embeddings = shots.into_iter().map(|s| s.embedding).collect();
        let p = g
            .add(write_lock, name, embeddings, &crops)
            .map_err(gallery_error)?;
        Ok(PersonJson::of(p))
    })?;
    person
        .warnings
        .extend(crate::access::bindings::enrollment_warning(
            &app.gallery_dir,
            &person.name,
            &person.id,
        ));
    Ok(person)
}

/// Records the largest face of `photo` as not being the person named `name`.
pub fn reject(app: &App, name: &str, photo: &Photo) -> ApiResult<PersonJson> {
    let (face, embedding, threshold) = {
        let mut pipeline = lock(&app.pipeline);
        let threshold = pipeline.threshold;
        let (face, embedding) = pipeline
            .faces(photo)
            .map_err(ApiError::bad)?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::bad("no face found"))?;
        (face, embedding, threshold)
    };
    let png = enrollment::png(&face.crop).map_err(ApiError::internal)?;
    change(app, |g, write_lock| {
        if !g
            .people()
            .iter()
            .any(|p| gallery::same_name(&p.entry.name, name))
        {
            return Err(ApiError::not_found(format!(
                "nobody named '{}' is enrolled",
                crate::support::terminal::escape(name)
            )));
        }
        let p = g
            .reject(write_lock, name, embedding.clone(), &png)
            .map_err(gallery_error)?;
        let mut json = PersonJson::of(p);
        json.suspects = suspect_shots(p, &embedding, threshold);
        if !json.suspects.is_empty() {
            let which: Vec<String> = json
                .suspects
                .iter()
                .map(|s| format!("shot {} (cosine {:.2})", s.shot + 1, s.cosine))
                .collect();
            let (look, subject, them) = if which.len() == 1 {
                ("looks", "it is", "it")
            } else {
                ("look", "they are", "them")
            };
            let name = &p.entry.name;
            json.warnings.push(format!(
                "{} of {name} {look} like this face: if {subject} not {name}, drop {them}, or \
                 {name} may still be given to faces like this one.",
                which.join(", "),
            ));
        }
        Ok(json)
    })
}

/// A shot of a person that looks like a face said not to be them.
#[derive(Serialize)]
pub struct Suspect {
    shot: usize,
    cosine: f32,
    /// The shot's picture; DELETE `/api/v1/people/{id}/shots/{shot}` drops it.
    url: String,
}

/// The shots of `p` that match `face` as well as a match does, most alike first: after "this is
/// not NAME", a shot that is this very face (a stranger once added to NAME by mistake) would keep
/// giving NAME to faces like it, since a shot as close as the negative outvotes it.
fn suspect_shots(p: &Person, face: &[f32], threshold: f32) -> Vec<Suspect> {
    let mut found: Vec<Suspect> = p
        .shots
        .iter()
        .enumerate()
        .map(|(k, shot)| (k, crate::embed::cosine(shot, face)))
        .filter(|(_, c)| *c >= threshold)
        .map(|(k, cosine)| Suspect {
            shot: k,
            cosine: (cosine * 1e3).round() / 1e3,
            url: format!("/api/v1/people/{}/shots/{k}.png", p.entry.id),
        })
        .collect();
    found.sort_by(|a, b| b.cosine.total_cmp(&a.cosine));
    found
}

/// Adds `shot` to person `id` when it looks like the same person as their shots: the one
/// consistency check every path that adds a face to someone applies ("Add shot", "This is NAME").
/// `what` names the shot in a refusal.
pub fn add_checked_shot(app: &App, id: &str, shot: Shot, what: &str) -> ApiResult<PersonJson> {
    change(app, |g, write_lock| {
        let p = person_or_404(g, id)?;
        let refs: Vec<&Vec<f32>> = p.shots.iter().collect();
        enrollment::matches_earlier(&shot.embedding, &refs, app.model.threshold)
            .map_err(|why| ApiError::bad(format!("{what}: {why}")))?;
        let p = g
            .add_shot(write_lock, id, shot.embedding, &shot.png)
            .map_err(gallery_error)?;
        Ok(PersonJson::of(p))
    })
}

/// Checks an uploaded photo as an enrollment shot; `what` names it in the message.
fn shot_from(app: &App, bytes: &[u8], what: &str, largest: bool) -> ApiResult<Shot> {
    let photo = upload::decode(bytes, what)?;
    check(app, &photo, largest).map_err(|why| ApiError::bad(format!("{what}: {why}")))
}

pub fn check(app: &App, photo: &Photo, largest: bool) -> Result<Shot, String> {
    enrollment::check_shot(&mut lock(&app.pipeline), photo, largest).map_err(String::from)
}

pub async fn list(State(app): Shared) -> ApiResult<Json<serde_json::Value>> {
    blocking(move || {
        let g = app.gallery().map_err(ApiError::internal)?;
        let people: Vec<PersonJson> = g.people().iter().map(PersonJson::of).collect();
        Ok(Json(serde_json::json!({ "people": people })))
    })
    .await
}

pub async fn get_one(State(app): Shared, Path(id): Path<String>) -> ApiResult<Json<PersonJson>> {
    blocking(move || {
        let g = app.gallery().map_err(ApiError::internal)?;
        Ok(Json(PersonJson::of(person_or_404(&g, &id)?)))
    })
    .await
}

pub async fn create(State(app): Shared, req: Request) -> ApiResult<Response> {
    let upload = upload::read(req, "photo").await?;
    blocking(move || {
        let name = upload
            .text("name")
            .ok_or_else(|| ApiError::bad("the form field `name` is missing"))?
            .to_string();
        {
            let g = app.gallery().map_err(ApiError::internal)?;
            check_new_name(&g, &name)?;
        }
        let (shots, labels) = shots_of(&app, &upload)?;
        let embeddings: Vec<&Vec<f32>> = shots.iter().map(|s| &s.embedding).collect();
        let warnings = enrollment::check_consistent(&embeddings, &labels, app.model.threshold)
            .map_err(ApiError::bad)?;
        let mut person = enroll(&app, &name, shots)?;
        person.warnings.splice(0..0, warnings);
        app.pending.remove(&upload.texts("shot"));
        Ok((StatusCode::CREATED, Json(person)).into_response())
    })
    .await
}

/// The shots of a create request: uploaded photos, or camera shots taken earlier.
fn shots_of(app: &App, upload: &Upload) -> ApiResult<(Vec<Shot>, Vec<String>)> {
    let photos: Vec<&upload::File> = upload.files("photo").collect();
    let taken = upload.texts("shot");
    if photos.is_empty() && taken.is_empty() {
        return Err(ApiError::bad(
            "no shots: send photos as the form field `photo` (three recommended), or camera shot ids as `shot`",
        ));
    }
    if photos.len() + taken.len() > MAX_PHOTOS {
        return Err(ApiError::bad(format!(
            "at most {MAX_PHOTOS} shots a person in one request"
        )));
    }
    let mut shots = Vec::new();
    let mut labels = Vec::new();
    for (i, file) in photos.iter().enumerate() {
        let what = upload::describe(&format!("photo {}", i + 1), file);
        shots.push(shot_from(app, &file.bytes, &what, false)?);
        labels.push(what);
    }
    for id in &taken {
        let shot = app.pending.get(id).ok_or_else(|| {
            ApiError::bad(format!(
                "camera shot '{}' is unknown or expired (shots are kept 10 minutes); take it again",
                crate::support::terminal::escape(id)
            ))
        })?;
        shots.push(shot);
        labels.push(format!("camera shot {id}"));
    }
    Ok((shots, labels))
}

#[derive(Deserialize)]
pub struct Rename {
    name: String,
}

pub async fn rename(
    State(app): Shared,
    Path(id): Path<String>,
    Json(body): Json<Rename>,
) -> ApiResult<Json<PersonJson>> {
    blocking(move || {
        change(&app, |g, write_lock| {
            let old = person_or_404(g, &id)?.entry.name.clone();
            if old != body.name {
                check_new_name(g, &body.name)?;
                g.rename(write_lock, &old, &body.name)
                    .map_err(gallery_error)?;
            }
            Ok(Json(PersonJson::of(person_or_404(g, &id)?)))
        })
    })
    .await
}

pub async fn remove(State(app): Shared, Path(id): Path<String>) -> ApiResult<StatusCode> {
    blocking(move || {
        change(&app, |g, write_lock| {
            let name = person_or_404(g, &id)?.entry.name.clone();
            g.remove(write_lock, &name).map_err(gallery_error)?;
            Ok(StatusCode::NO_CONTENT)
        })
    })
    .await
}

pub async fn add_shot(
    State(app): Shared,
    Path(id): Path<String>,
    req: Request,
) -> ApiResult<Json<PersonJson>> {
    let upload = upload::read(req, "photo").await?;
    blocking(move || {
        let file = upload.files("photo").next().ok_or_else(|| {
            ApiError::bad("no photo: send it as the body, or as the form field `photo`")
        })?;
        person_or_404(&*app.gallery().map_err(ApiError::internal)?, &id)?;
        let shot = shot_from(&app, &file.bytes, &upload::describe("photo", file), false)?;
        Ok(Json(add_checked_shot(&app, &id, shot, "photo")?))
    })
    .await
}

fn shot_index(text: &str) -> ApiResult<usize> {
    text.parse().map_err(|_| {
        ApiError::not_found(format!(
            "no shot '{}'",
            crate::support::terminal::escape(text)
        ))
    })
}

pub async fn remove_shot(
    State(app): Shared,
    Path((id, shot)): Path<(String, String)>,
) -> ApiResult<Json<PersonJson>> {
    let index = shot_index(&shot)?;
    blocking(move || {
        change(&app, |g, write_lock| {
            let p = person_or_404(g, &id)?;
            if index >= p.shots.len() {
                return Err(ApiError::not_found(format!("{id} has no shot {index}")));
            }
            if p.shots.len() == 1 {
                return Err(ApiError::bad(format!(
                    "{id}'s only shot cannot be dropped; remove the person instead"
                )));
            }
            let p = g
                .remove_shot(write_lock, &id, index)
                .map_err(gallery_error)?;
            Ok(Json(PersonJson::of(p)))
        })
    })
    .await
}

fn png(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "image/png")], bytes).into_response()
}

pub async fn shot_image(
    State(app): Shared,
    Path((id, shot)): Path<(String, String)>,
) -> ApiResult<Response> {
    let index = shot_index(shot.strip_suffix(".png").unwrap_or(&shot))?;
    blocking(move || {
        let g = app.gallery().map_err(ApiError::internal)?;
        let p = person_or_404(&g, &id)?;
        let crop =
            p.entry.crops.get(index).ok_or_else(|| {
                ApiError::not_found(format!("{id} has no picture of shot {index}"))
            })?;
        // The crop's name was checked against the gallery's own naming when the index was read.
        let path = g.crop_path(crop);
        let bytes = crate::support::limits::read_file(
            &path,
            crate::support::limits::MAX_IMAGE_FILE_BYTES,
            "crop",
        )
        .map_err(|e| ApiError::internal(format!("shot {index} of {id}: {e}")))?;
        Ok(png(bytes))
    })
    .await
}

#[derive(Deserialize, Default)]
pub struct ShotRequest {
    #[serde(default)]
    previous: Vec<String>,
}

#[derive(Serialize)]
pub struct ShotVerdict {
    ok: bool,
    verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    shot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    /// What to ask the person before the next shot.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<&'static str>,
}

/// One guided shot from the latest live frame: the checks of `enroll --camera`.
pub async fn camera_shot(
    State(app): Shared,
    body: Option<Json<ShotRequest>>,
) -> ApiResult<Json<ShotVerdict>> {
    let request = body.map(|Json(b)| b).unwrap_or_default();
    blocking(move || {
        let (_, rgb) = app.hub.latest_frame().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no live frame yet: is the camera running?",
            )
        })?;
        let photo = Photo::from_dynamic(image::DynamicImage::ImageRgb8(Arc::unwrap_or_clone(rgb)));
        let earlier: Vec<Shot> = request
            .previous
            .iter()
            .map(|id| {
                app.pending.get(id).ok_or_else(|| {
                    ApiError::bad(format!(
                        "camera shot '{}' is unknown or expired; start again",
                        crate::support::terminal::escape(id)
                    ))
                })
            })
            .collect::<ApiResult<_>>()?;
        let threshold = app.model.threshold;
        let checked = check(&app, &photo, false).and_then(|shot| {
            let refs: Vec<&Vec<f32>> = earlier.iter().map(|s| &s.embedding).collect();
            enrollment::matches_earlier(&shot.embedding, &refs, threshold)?;
            Ok(shot)
        });
        Ok(Json(match checked {
            Ok(shot) => {
                let verdict = shot.verdict();
                let id = app.pending.add(shot);
                ShotVerdict {
                    ok: true,
                    verdict,
                    image: Some(format!("/api/v1/camera/shots/{id}.png")),
                    shot: Some(id),
                    next: enrollment::PROMPTS.get(earlier.len() + 1).copied(),
                }
            }
            Err(why) => ShotVerdict {
                ok: false,
                verdict: why,
                shot: None,
                image: None,
                next: None,
            },
        }))
    })
    .await
}

pub async fn camera_shot_image(
    State(app): Shared,
    Path(shot): Path<String>,
) -> ApiResult<Response> {
    let id = shot.strip_suffix(".png").unwrap_or(&shot);
    let taken = app
        .pending
        .get(id)
        .ok_or_else(|| ApiError::not_found("no such camera shot (they are kept 10 minutes)"))?;
    Ok(png(taken.png))
}
