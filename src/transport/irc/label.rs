//! IRCv3 `labeled-response` and `batch`: a command's replies given back with its `label`, and
//! lines grouped in a `BATCH`. Pure: the session collects what one command said and hands it
//! here with the label.

use super::message::Message;

/// The replies to a command that carried `label`: none becomes `ACK`, one carries the tag, more
/// go in a `labeled-response` batch called `id` (the batch carries the label).
pub fn labeled(label: &str, replies: Vec<Message>, server: &str, id: &str) -> Vec<Message> {
    match replies.len() {
        0 => vec![Message::new("ACK").source(server).tag("label", label)],
        1 => replies.into_iter().map(|m| m.tag("label", label)).collect(),
        _ => {
            let mut out = batch(id, "labeled-response", &[], replies, server);
            if let Some(open) = out.first_mut() {
                open.tags.push(("label".into(), label.into()));
            }
            out
        }
    }
}

/// `messages` inside a batch of `kind` (with `params`) called `id`: `BATCH +id kind params...`,
/// each message tagged `batch=id` (a nested batch's opening and closing lines too, not its
/// contents, which name their own batch), then `BATCH -id`.
pub fn batch(
    id: &str,
    kind: &str,
    params: &[&str],
    messages: Vec<Message>,
    server: &str,
) -> Vec<Message> {
    let mut out = Vec::with_capacity(messages.len() + 2);
    out.push(
        Message::new("BATCH")
            .source(server)
            .param(format!("+{id}"))
            .param(kind)
            .params(params.iter().copied()),
    );
    out.extend(messages.into_iter().map(|m| {
        if m.tag_value("batch").is_some() {
            m
        } else {
            m.tag("batch", id)
        }
    }));
    out.push(Message::new("BATCH").source(server).param(format!("-{id}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(messages: &[Message]) -> Vec<String> {
        messages.iter().map(Message::line).collect()
    }

    #[test]
    fn no_reply_is_an_ack() {
        let out = labeled("x1", Vec::new(), "srv", "b1");
        assert_eq!(lines(&out), ["@label=x1 :srv ACK\r\n"]);
    }

    #[test]
    fn one_reply_carries_the_label() {
        let out = labeled("x1", vec![Message::new("PONG").param("t")], "srv", "b1");
        assert_eq!(lines(&out), ["@label=x1 PONG t\r\n"]);
    }

    #[test]
    fn several_replies_go_in_a_labeled_batch() {
        let replies = vec![Message::new("A"), Message::new("B")];
        let out = labeled("x1", replies, "srv", "b1");
        assert_eq!(
            lines(&out),
            [
                "@label=x1 :srv BATCH +b1 labeled-response\r\n",
                "@batch=b1 A\r\n",
                "@batch=b1 B\r\n",
                ":srv BATCH -b1\r\n",
            ]
        );
    }
}
