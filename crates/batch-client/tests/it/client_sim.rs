//! The client alone against openai-sim: a file's whole life (upload, retrieve, list, download,
//! delete), batch list pagination, and the synchronous chat and image endpoints.

use batch_client::{BatchListQuery, CreateBatchRequest, FileListQuery};
use batch_format::{ChatCompletionRequest, Endpoint, ImageGenerationRequest, Message};

use crate::support::{client, shards, sim};

#[tokio::test]
async fn a_file_is_uploaded_listed_downloaded_and_deleted() {
    let sim = sim().await;
    let client = client(&sim.base_url());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut bytes = Vec::new();
    shards("f", 1, 3)[0].write_jsonl(&mut bytes).unwrap();
    std::fs::write(&input, &bytes).unwrap();

    let file = client
        .upload_file(&input, "batchbeam-k.jsonl", "batch")
        .await
        .unwrap();
    assert_eq!(file.bytes, Some(bytes.len() as u64));
    assert_eq!(file.filename.as_deref(), Some("batchbeam-k.jsonl"));
    assert_eq!(client.retrieve_file(&file.id).await.unwrap(), file);
    let listed = client
        .list_files(&FileListQuery {
            purpose: Some("batch".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed
            .data
            .iter()
            .map(|f| f.id.as_str())
            .collect::<Vec<_>>(),
        [file.id.as_str()]
    );

    let copy = dir.path().join("copy").join("in.jsonl");
    let n = client.download_file(&file.id, &copy).await.unwrap();
    assert_eq!(n, bytes.len() as u64);
    assert_eq!(std::fs::read(&copy).unwrap(), bytes);
    // Nothing is left behind but the file itself.
    assert_eq!(
        std::fs::read_dir(copy.parent().unwrap()).unwrap().count(),
        1
    );

    assert!(client.delete_file(&file.id).await.unwrap().deleted);
    assert_eq!(
        client.retrieve_file(&file.id).await.unwrap_err().status(),
        Some(404)
    );
    assert_eq!(sim.stats().await.files_deleted, 1);
}

#[tokio::test]
async fn batch_lists_page_with_after_until_has_more_is_false() {
    let sim = sim().await;
    let client = client(&sim.base_url());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut bytes = Vec::new();
    shards("p", 1, 1)[0].write_jsonl(&mut bytes).unwrap();
    std::fs::write(&input, &bytes).unwrap();
    let file = client
        .upload_file(&input, "in.jsonl", "batch")
        .await
        .unwrap();
    let mut created = Vec::new();
    for _ in 0..5 {
        let b = client
            .create_batch(&CreateBatchRequest::new(
                &file.id,
                Endpoint::ChatCompletions,
            ))
            .await
            .unwrap();
        created.push(b.id);
        sim.advance_clock(1.0).await;
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = client
            .list_batches(&BatchListQuery {
                limit: Some(2),
                after: after.clone(),
            })
            .await
            .unwrap();
        assert!(page.data.len() <= 2);
        seen.extend(page.data.iter().map(|b| b.id.clone()));
        if !page.has_more {
            break;
        }
        after = page.last_id;
    }
    created.reverse(); // newest first
    assert_eq!(seen, created);
}

#[tokio::test]
async fn chat_and_images_answer_synchronously() {
    let sim = sim().await;
    let client = client(&sim.base_url());
    let chat = ChatCompletionRequest::new("gpt-4o-mini", vec![Message::user("Say hello.")]);
    let reply = client.chat_completion(&chat).await.unwrap();
    assert_eq!(reply["object"], "chat.completion");
    assert!(
        reply["choices"][0]["message"]["content"].is_string(),
        "{reply}"
    );
    let image = ImageGenerationRequest::new("gpt-image-1", "a fox in snow");
    let reply = client.image_generation(&image).await.unwrap();
    assert!(reply["data"][0]["b64_json"].is_string());
    assert_eq!(sim.stats().await.sync_requests, 2);
}
