//! Pipelines, commands and operands: declarations (`$x :=`, `$i, $v :=`),
//! the three-token look-ahead that tells `$x foo` from `$x := foo`, field
//! chains on terms, and the checks Go makes on a finished pipeline.

use super::{Fail, Parser};
use crate::template::lex::ItemType;
use crate::template::node::{Arg, Command, Pipe};
use crate::template::number::Number;
use crate::template::quote::{quote, unquote};

impl Parser<'_> {
    pub(super) fn pipeline(&mut self, context: &str, end: ItemType) -> Fail<Pipe> {
        self.enter()?;
        let r = self.pipeline_body(context, end);
        self.depth -= 1;
        r
    }

    fn pipeline_body(&mut self, context: &str, end: ItemType) -> Fail<Pipe> {
        let token = self.peek_non_space();
        let mut pipe = Pipe {
            pos: token.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        self.declarations(&mut pipe, context)?;
        loop {
            let token = self.next_non_space();
            match token.typ {
                t if t == end => {
                    check_pipeline(&pipe, context)?;
                    return Ok(pipe);
                }
                ItemType::Bool
                | ItemType::CharConstant
                | ItemType::Complex
                | ItemType::Dot
                | ItemType::Field
                | ItemType::Identifier
                | ItemType::Number
                | ItemType::Nil
                | ItemType::RawString
                | ItemType::String
                | ItemType::Variable
                | ItemType::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&token, context)),
            }
        }
    }

    /// `$x :=`, `$x =`, and `$i, $v :=` in a range.
    fn declarations(&mut self, pipe: &mut Pipe, context: &str) -> Fail<()> {
        loop {
            let v = self.peek_non_space();
            if v.typ != ItemType::Variable {
                return Ok(());
            }
            self.next();
            let after = self.peek();
            let next = self.peek_non_space();
            match next.typ {
                ItemType::Assign | ItemType::Declare => {
                    pipe.is_assign = next.typ == ItemType::Assign;
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    return Ok(());
                }
                ItemType::Char if next.val == "," => {
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().typ {
                            ItemType::Variable | ItemType::RightDelim | ItemType::RightParen => {
                                continue
                            }
                            _ => return Err("range can only initialize variables".into()),
                        }
                    }
                    return Err(format!("too many declarations in {context}"));
                }
                _ if after.typ == ItemType::Space => {
                    self.backup3(v, after);
                    return Ok(());
                }
                _ => {
                    self.backup2(v);
                    return Ok(());
                }
            }
        }
    }

    fn command(&mut self) -> Fail<Command> {
        let pos = self.peek_non_space().pos;
        let mut cmd = Command {
            pos,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                cmd.args.push(op);
            }
            let token = self.next();
            match token.typ {
                ItemType::Space => continue,
                ItemType::RightDelim | ItemType::RightParen => self.backup(),
                ItemType::Pipe => {}
                _ => return Err(self.unexpected(&token, "operand")),
            }
            break;
        }
        if cmd.args.is_empty() {
            return Err("empty command".into());
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> Fail<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().typ != ItemType::Field {
            return Ok(Some(node));
        }
        let pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().typ == ItemType::Field {
            fields.push(self.next().val[1..].to_string());
        }
        Ok(Some(match node {
            Arg::Field { mut ident, .. } => {
                ident.extend(fields);
                Arg::Field { pos, ident }
            }
            Arg::Variable { mut ident, .. } => {
                ident.extend(fields);
                Arg::Variable { pos, ident }
            }
            n @ (Arg::Bool { .. }
            | Arg::String { .. }
            | Arg::Number { .. }
            | Arg::Nil { .. }
            | Arg::Dot { .. }) => {
                return Err(format!("unexpected . after term {}", quote(&n.to_string())));
            }
            n => Arg::Chain {
                pos,
                node: Box::new(n),
                fields,
            },
        }))
    }

    fn term(&mut self) -> Fail<Option<Arg>> {
        let token = self.next_non_space();
        let pos = token.pos;
        Ok(Some(match token.typ {
            ItemType::Identifier => {
                if !(self.has_func)(&token.val) {
                    return Err(format!("function {} not defined", quote(&token.val)));
                }
                Arg::Identifier {
                    pos,
                    name: token.val,
                }
            }
            ItemType::Dot => Arg::Dot { pos },
            ItemType::Nil => Arg::Nil { pos },
            ItemType::Variable => {
                let ident: Vec<String> = token.val.split('.').map(String::from).collect();
                if !self.vars.iter().any(|v| *v == ident[0]) {
                    return Err(format!("undefined variable {}", quote(&ident[0])));
                }
                Arg::Variable { pos, ident }
            }
            ItemType::Field => Arg::Field {
                pos,
                ident: token.val[1..].split('.').map(String::from).collect(),
            },
            ItemType::Bool => Arg::Bool {
                pos,
                val: token.val == "true",
            },
            ItemType::CharConstant | ItemType::Complex | ItemType::Number => {
                let num = Number::parse(
                    &token.val,
                    token.typ == ItemType::CharConstant,
                    token.typ == ItemType::Complex,
                )?;
                Arg::Number { pos, num }
            }
            ItemType::LeftParen => Arg::Pipe(Box::new(
                self.pipeline("parenthesized pipeline", ItemType::RightParen)?,
            )),
            ItemType::String | ItemType::RawString => {
                let text = unquote(&token.val).ok_or("invalid syntax")?;
                Arg::String {
                    pos,
                    quoted: token.val,
                    text,
                }
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

fn check_pipeline(pipe: &Pipe, context: &str) -> Fail<()> {
    if pipe.cmds.is_empty() {
        return Err(format!("missing value for {context}"));
    }
    for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
        if matches!(
            c.args[0],
            Arg::Bool { .. }
                | Arg::Dot { .. }
                | Arg::Nil { .. }
                | Arg::Number { .. }
                | Arg::String { .. }
        ) {
            return Err(format!(
                "non executable command in pipeline stage {}",
                i + 1
            ));
        }
    }
    Ok(())
}
