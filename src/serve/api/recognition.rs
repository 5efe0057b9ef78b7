//! `POST /recognize`, `/detect` and `/verify`: the photo commands over HTTP.

use axum::extract::{Request, State};
use axum::Json;
use serde::Serialize;

use super::upload::{self, Upload};
use super::{blocking, ApiError, ApiResult, Shared};
use crate::embed::cosine;
use crate::recognize::matcher::Matcher;
use crate::serve::lock;

/// A face as `identify --json` prints it, plus the landmarks.
#[derive(Serialize)]
pub struct FaceJson {
    x: i32,
    y: i32,
    w: i32,
    h: i32,
    landmarks: Option<[[f32; 2]; 5]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    known: Option<bool>,
}

#[derive(Serialize)]
pub struct Faces {
    faces: Vec<FaceJson>,
}

/// The one image of a request (raw body, or the multipart field `image`).
fn only_image(upload: &Upload) -> ApiResult<&upload::File> {
    let mut files = upload.files("image");
    let file = files.next().ok_or_else(|| {
        ApiError::bad("no image: send it as the body, or as the form field `image`")
    })?;
    if files.next().is_some() {
        return Err(ApiError::bad("one image per request"));
    }
    Ok(file)
}

pub async fn recognize(State(app): Shared, req: Request) -> ApiResult<Json<Faces>> {
    let upload = upload::read(req, "image").await?;
    blocking(move || {
        let file = only_image(&upload)?;
        let photo = upload::decode(&file.bytes, &upload::describe("image", file))?;
        let gallery = app.gallery().map_err(ApiError::internal)?;
        let matcher = Matcher::new(gallery.people());
        let mut pipeline = lock(&app.pipeline);
        let threshold = pipeline.threshold;
        let faces = pipeline.faces(&photo).map_err(ApiError::bad)?;
        let faces = faces
            .iter()
            .map(|(face, embedding)| {
                let m = matcher.identify(embedding, threshold);
                let name = m.person.map(|i| gallery.people()[i].entry.name.clone());
                FaceJson {
                    x: face.rect.x,
                    y: face.rect.y,
                    w: face.rect.w,
                    h: face.rect.h,
                    landmarks: face.landmarks,
                    known: Some(name.is_some()),
                    name: Some(name),
                    score: Some((m.score * 1e4).round() / 1e4),
                }
            })
            .collect();
        Ok(Json(Faces { faces }))
    })
    .await
}

pub async fn detect(State(app): Shared, req: Request) -> ApiResult<Json<Faces>> {
    let upload = upload::read(req, "image").await?;
    blocking(move || {
        let file = only_image(&upload)?;
        let photo = upload::decode(&file.bytes, &upload::describe("image", file))?;
        let mut pipeline = lock(&app.pipeline);
        let p = &mut *pipeline;
        let faces = p.finder.faces(&photo, &p.embedder).map_err(ApiError::bad)?;
        let faces = faces
            .iter()
            .map(|face| FaceJson {
                x: face.rect.x,
                y: face.rect.y,
                w: face.rect.w,
                h: face.rect.h,
                landmarks: face.landmarks,
                name: None,
                score: None,
                known: None,
            })
            .collect();
        Ok(Json(Faces { faces }))
    })
    .await
}

#[derive(Serialize)]
pub struct Verdict {
    same: bool,
    score: f32,
    threshold: f32,
}

pub async fn verify(State(app): Shared, req: Request) -> ApiResult<Json<Verdict>> {
    let upload = upload::read(req, "image").await?;
    blocking(move || {
        let mut embeddings = Vec::new();
        for field in ["a", "b"] {
            let file = upload.files(field).next().ok_or_else(|| {
                ApiError::bad("verify needs two images, as the form fields `a` and `b`")
            })?;
            let what = upload::describe(&format!("image {field}"), file);
            let photo = upload::decode(&file.bytes, &what)?;
            let mut faces = lock(&app.pipeline).faces(&photo).map_err(ApiError::bad)?;
            if faces.is_empty() {
                return Err(ApiError::bad(format!("{what}: no face found")));
            }
            embeddings.push(faces.swap_remove(0).1);
        }
        let threshold = app.model.threshold;
        let score = cosine(&embeddings[0], &embeddings[1]);
        Ok(Json(Verdict {
            same: score >= threshold,
            score: (score * 1e4).round() / 1e4,
            threshold,
        }))
    })
    .await
}
