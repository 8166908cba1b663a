//! Drawing the model: a header with the tabs and the connection, the VM table (or the images
//! table), the selected VM's details (figures, sparklines, disks, console), one message line, the
//! keys in a footer, and the overlays (help, confirmation, the create form). Pure: the same model
//! draws the same screen (times come from the model, not the clock).

use crate::app::{App, COLUMNS, Column, Mode, Tab};
use crate::form::Form;
use banger_api::response::{Phase, Vm};
use banger_config::size::{format_duration, format_size};
use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap};

const FOOTER_VMS: &str = "c create  s start  t stop  r restart  K kill  d delete  n NAT  ⏎ ssh  / filter  o sort  Tab images  ? help  q quit";
/// Under 116 columns (the rest is in the help).
const FOOTER_VMS_NARROW: &str = "c create  s start  t stop  d delete  n NAT  ⏎ ssh  / filter  ? help  q quit";
const FOOTER_IMAGES: &str = "↑↓ select  d delete  Tab VMs  ? help  q quit";

pub const HELP: &[(&str, &str)] = &[
    ("↑ ↓  j k  PgUp PgDn  g G", "move the selection"),
    ("Tab  1  2", "VMs / images"),
    ("c", "create a VM (a form)"),
    ("s  t  r", "start, stop, restart the selected VM"),
    ("K", "kill its VMM (asks first)"),
    ("d  Del", "delete the selected VM or image (asks first)"),
    ("n", "turn NAT on or off"),
    ("Enter", "SSH into it (back here when it ends)"),
    ("/", "filter by name (Enter keeps, Esc clears)"),
    ("o  O", "sort by the next column / reverse the order"),
    ("Esc", "clear the message and the filter"),
    ("q  Ctrl-C", "quit"),
];

fn state_style(p: Phase) -> Style {
    match p {
        Phase::Running => Style::new().fg(Color::Green),
        Phase::Starting | Phase::Stopping => Style::new().fg(Color::Yellow),
        Phase::Failed => Style::new().fg(Color::Red),
        Phase::Stopped => Style::new().fg(Color::DarkGray),
    }
}

/// Columns shown at this width (the least useful go first when narrow).
fn columns(width: u16) -> Vec<Column> {
    let mut cols = COLUMNS.to_vec();
    if width < 100 {
        cols.retain(|c| !matches!(c, Column::Backend));
    }
    if width < 80 {
        cols.retain(|c| !matches!(c, Column::Rss | Column::Nat));
    }
    cols
}

fn cell(app: &App, vm: &Vm, c: Column) -> Cell<'static> {
    let p = vm.process.as_ref();
    match c {
        Column::Name => Cell::from(vm.name.clone()),
        Column::State => match app.doing(&vm.name) {
            Some(_) => Cell::from(format!("{}…", vm.state.as_str())).style(Style::new().fg(Color::Yellow)),
            None => Cell::from(vm.state.as_str()).style(state_style(vm.state)),
        },
        Column::Backend => Cell::from(vm.backend.clone().unwrap_or_else(|| "-".into())),
        Column::Ip => Cell::from(vm.ip.clone()),
        Column::Vcpu => Cell::from(vm.vcpus.to_string()),
        Column::Memory => Cell::from(format_size((vm.memory_mib as u64) << 20)),
        Column::Cpu => {
            Cell::from(p.and_then(|p| p.cpu_percent).map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into()))
        }
        Column::Rss => Cell::from(p.map(|p| format_size(p.rss_bytes)).unwrap_or_else(|| "-".into())),
        Column::Uptime => Cell::from(uptime(app, vm).map(short_duration).unwrap_or_else(|| "-".into())),
        Column::Nat => Cell::from(if vm.nat { "on" } else { "-" }),
    }
}

fn width_of(c: Column) -> Constraint {
    match c {
        Column::Name => Constraint::Min(12),
        Column::State => Constraint::Length(9),
        Column::Backend => Constraint::Length(11),
        Column::Ip => Constraint::Length(15),
        Column::Vcpu => Constraint::Length(4),
        Column::Memory => Constraint::Length(5),
        Column::Cpu => Constraint::Length(5),
        Column::Rss => Constraint::Length(6),
        Column::Uptime => Constraint::Length(7),
        Column::Nat => Constraint::Length(3),
    }
}

/// Seconds since the VM started, by the model's clock (it ticks without asking the daemon).
fn uptime(app: &App, vm: &Vm) -> Option<u64> {
    vm.started_at.map(|s| app.now().saturating_sub(s))
}

/// `3725` → `1h02m`: at most two units, for narrow columns.
pub fn short_duration(s: u64) -> String {
    match (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, s) => format!("{m}m{s:02}s"),
        (0, h, m, _) => format!("{h}h{m:02}m"),
        (d, h, _, _) => format!("{d}d{h:02}h"),
    }
}

pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let [header, main, message, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(4), Constraint::Length(1), Constraint::Length(1)])
            .areas(area);
    draw_header(f, app, header);
    match app.tab {
        Tab::Vms => {
            let wide = main.width >= 140;
            let split = if wide {
                Layout::new(Direction::Horizontal, [Constraint::Percentage(58), Constraint::Percentage(42)])
            } else {
                // The table as tall as its rows (borders and header: 3), at most half.
                let rows = app.rows().len().max(1) as u16 + 3;
                Layout::new(
                    Direction::Vertical,
                    [Constraint::Length(rows.min(main.height / 2).max(5).min(main.height)), Constraint::Min(0)],
                )
            };
            let [table, detail] = split.areas(main);
            draw_vms(f, app, table);
            draw_detail(f, app, detail);
        }
        Tab::Images => draw_images(f, app, main),
    }
    if let Some((text, error)) = &app.message {
        let style = if *error { Style::new().fg(Color::Red) } else { Style::new().fg(Color::Cyan) };
        f.render_widget(Paragraph::new(text.as_str()).style(style), message);
    } else if let Mode::Filter = app.mode {
        f.render_widget(Paragraph::new(format!("filter: {}▏", app.filter)), message);
    } else if app.tab == Tab::Images && !app.all_doing().is_empty() {
        // (VM rows show their own.)
        let doing: Vec<String> = app.all_doing().iter().map(|(n, d)| format!("{n}: {d}")).collect();
        f.render_widget(Paragraph::new(doing.join("  ·  ")).style(Style::new().fg(Color::Yellow)), message);
    }
    let keys = match app.tab {
        Tab::Vms if area.width < FOOTER_VMS.chars().count() as u16 => FOOTER_VMS_NARROW,
        Tab::Vms => FOOTER_VMS,
        Tab::Images => FOOTER_IMAGES,
    };
    f.render_widget(Paragraph::new(keys).style(Style::new().fg(Color::DarkGray)), footer);
    match &app.mode {
        Mode::Help => draw_help(f, area),
        Mode::Confirm(action) => draw_confirm(f, area, &app.question(action)),
        Mode::Form(form) => draw_form(f, area, form),
        Mode::Normal | Mode::Filter => {}
    }
}

fn draw_header(f: &mut Frame, app: &App, area: Rect) {
    // The connection first, on the right: it is never pushed off by a long filter.
    let status = if app.connected {
        Span::styled("● connected", Style::new().fg(Color::Green))
    } else {
        Span::styled("◌ bangerd is gone: reconnecting…", Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD))
    };
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(status.width() as u16 + 1)]).areas(area);
    f.render_widget(Paragraph::new(Line::from(vec![Span::raw(" "), status])), right);
    let tab = |t: Tab, text: String| {
        if app.tab == t {
            Span::styled(format!(" {text} "), Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD))
        } else {
            Span::raw(format!(" {text} "))
        }
    };
    let mut spans = vec![
        Span::styled("banger ", Style::new().add_modifier(Modifier::BOLD)),
        tab(Tab::Vms, format!("VMs {}/{} running", app.running(), app.vms.len())),
        Span::raw(" "),
        tab(Tab::Images, format!("Images {}", app.images.len())),
    ];
    if !app.filter.is_empty() {
        spans.push(Span::styled(format!("  filter: {}", app.filter), Style::new().fg(Color::Cyan)));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), left);
}

fn draw_vms(f: &mut Frame, app: &App, area: Rect) {
    let cols = columns(area.width);
    let rows = app.rows();
    let sort_mark = if app.descending { "▼" } else { "▲" };
    let header = Row::new(cols.iter().map(|c| {
        let t = if *c == app.sort { format!("{}{sort_mark}", c.title()) } else { c.title().to_string() };
        Cell::from(t)
    }))
    .style(Style::new().add_modifier(Modifier::BOLD));
    let body: Vec<Row> = rows.iter().map(|vm| Row::new(cols.iter().map(|c| cell(app, vm, *c)))).collect();
    let title = if !app.loaded {
        " VMs: loading… ".to_string()
    } else if rows.is_empty() && app.vms.is_empty() {
        " VMs: none yet — c creates one ".to_string()
    } else if rows.is_empty() {
        format!(" VMs: none match {:?} ", app.filter)
    } else {
        format!(" VMs ({}) ", rows.len())
    };
    let table = Table::new(body, cols.iter().map(|c| width_of(*c)))
        .header(header)
        .block(Block::new().borders(Borders::ALL).title(title))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .column_spacing(1);
    let mut state = TableState::new().with_selected(app.selected_index());
    f.render_stateful_widget(table, area, &mut state);
    draw_progress_in_rows(f, app, area, &cols, &rows, state.offset());
}

/// A busy row shows what its operation is doing now over its columns after STATE (the same
/// column layout as the table's: flex start, one space between).
fn draw_progress_in_rows(f: &mut Frame, app: &App, area: Rect, cols: &[Column], rows: &[&Vm], offset: usize) {
    let inner = Block::new().borders(Borders::ALL).inner(area);
    let Some(state_at) = cols.iter().position(|c| *c == Column::State) else { return };
    let rects = Layout::horizontal(cols.iter().map(|c| width_of(*c)))
        .flex(ratatui::layout::Flex::Start)
        .spacing(1)
        .split(inner);
    let Some(after) = rects.get(state_at + 1) else { return };
    let visible = inner.height.saturating_sub(1) as usize; // below the header row
    for (i, vm) in rows.iter().enumerate().skip(offset).take(visible) {
        let Some(doing) = app.doing(&vm.name) else { continue };
        let y = inner.y + 1 + (i - offset) as u16;
        let r = Rect { x: after.x, y, width: inner.right().saturating_sub(after.x), height: 1 };
        let style = if Some(i) == app.selected_index() {
            Style::new().fg(Color::Yellow).add_modifier(Modifier::REVERSED)
        } else {
            Style::new().fg(Color::Yellow)
        };
        f.render_widget(Clear, r);
        f.render_widget(Paragraph::new(format!("↳ {doing}")).style(style), r);
    }
}

fn draw_detail(f: &mut Frame, app: &App, area: Rect) {
    let Some(vm) = app.selected_vm() else {
        f.render_widget(Block::new().borders(Borders::ALL).title(" details "), area);
        return;
    };
    let block = Block::new().borders(Borders::ALL).title(format!(" {} ", vm.name));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let mut lines = vec![Line::from(vec![
        Span::styled(vm.state.as_str(), state_style(vm.state)),
        Span::raw(format!(
            "  {}  {}  {} vCPU  {}  NAT {}",
            vm.image,
            vm.ip,
            vm.vcpus,
            format_size((vm.memory_mib as u64) << 20),
            if vm.nat { "on" } else { "off" }
        )),
    ])];
    if let Some(doing) = app.doing(&vm.name) {
        lines.push(Line::styled(format!("… {doing}"), Style::new().fg(Color::Yellow)));
    } else if let Some(e) = &vm.last_error {
        lines.push(Line::styled(format!("last error: {e}"), Style::new().fg(Color::Red)));
    }
    let disks: Vec<String> =
        vm.disks.iter().map(|d| format!("{} {}/{}", d.role, format_size(d.allocated), format_size(d.size))).collect();
    lines.push(Line::raw(format!("disks  {}", disks.join("  "))));
    if let (Some(s), Some(up)) = (&app.stats, uptime(app, vm)) {
        let guest = match (&s.guest, &s.guest_error) {
            (Some(g), _) => {
                format!("load {:.2}  mem {}/{}", g.load[0], format_size(g.mem_used), format_size(g.mem_total))
            }
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        lines.push(Line::raw(format!("up {}  {guest}", format_duration(up as f64))));
    }
    let text_h = lines.len() as u16;
    let hist = app.history.get(&vm.name);
    let room = inner.height.saturating_sub(text_h);
    let spark_h = match (vm.state == Phase::Running, room) {
        (false, _) => 0,
        (true, r) if r >= 16 => 3,
        (true, r) if r >= 4 => 1,
        _ => 0,
    };
    let [text, cpu, mem, console] = Layout::vertical([
        Constraint::Length(text_h),
        Constraint::Length(spark_h),
        Constraint::Length(spark_h),
        Constraint::Min(0),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(lines), text);
    if spark_h > 0 {
        let cpu_now = vm.process.as_ref().and_then(|p| p.cpu_percent).map(|c| format!("{c:.1}%")).unwrap_or("-".into());
        let data: Vec<u64> = hist.map(|h| h.cpu.iter().copied().collect()).unwrap_or_default();
        // Scaled to one CPU (100%), or to the highest sample when above.
        let top = data.iter().copied().max().unwrap_or(0).max(1000);
        spark(f, cpu, &format!("CPU {cpu_now}"), &data, top, Color::Green);
        let data: Vec<u64> = hist.map(|h| h.mem.iter().copied().collect()).unwrap_or_default();
        let total = hist.map(|h| h.mem_total).filter(|t| *t > 0).unwrap_or((vm.memory_mib as u64) << 20);
        let mem_now = data.last().map(|m| format_size(*m)).unwrap_or("-".into());
        spark(f, mem, &format!("MEM {mem_now}"), &data, total, Color::Magenta);
    }
    if console.height > 1 {
        let n = console.height as usize - 1;
        let tail = &app.console[app.console.len().saturating_sub(n)..];
        let mut c = vec![Line::styled("console", Style::new().add_modifier(Modifier::BOLD))];
        c.extend(tail.iter().map(|l| Line::styled(l.clone(), Style::new().fg(Color::Gray))));
        f.render_widget(Paragraph::new(c), console);
    }
}

/// A labelled sparkline: the label on the left, the newest samples on the right.
fn spark(f: &mut Frame, area: Rect, label: &str, data: &[u64], max: u64, color: Color) {
    let [l, s] = Layout::horizontal([Constraint::Length(14), Constraint::Min(1)]).areas(area);
    // The label beside the sparkline's baseline.
    let l = Rect { y: l.y + l.height.saturating_sub(1), height: l.height.min(1), ..l };
    f.render_widget(Paragraph::new(label.to_string()), l);
    let from = data.len().saturating_sub(s.width as usize);
    f.render_widget(Sparkline::default().data(&data[from..]).max(max).style(Style::new().fg(color)), s);
}

fn draw_images(f: &mut Frame, app: &App, area: Rect) {
    let header = Row::new(["NAME", "KIND", "SIZE/ALLOC", "BASE", "CREATED", "VMS"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let rows: Vec<Row> = app
        .images
        .iter()
        .map(|i| {
            Row::new([
                Cell::from(i.name.clone()),
                Cell::from(i.kind.clone()),
                Cell::from(format!("{}/{}", format_size(i.size), format_size(i.allocated))),
                Cell::from(i.base.clone().unwrap_or_else(|| "-".into())),
                Cell::from(
                    i.created_at
                        .map(|t| format!("{} ago", short_duration(app.now().saturating_sub(t))))
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(if i.vms.is_empty() { "-".into() } else { i.vms.join(",") }),
            ])
        })
        .collect();
    let widths = [
        Constraint::Min(10),
        Constraint::Length(7),
        Constraint::Length(12),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Min(6),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::new().borders(Borders::ALL).title(format!(" Images ({}) ", app.images.len())))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::new().with_selected((!app.images.is_empty()).then_some(app.image_index));
    f.render_stateful_widget(table, area, &mut state);
}

/// A box of `w`×`h` in the middle of `area` (clipped to it), cleared.
fn popup(f: &mut Frame, area: Rect, w: u16, h: u16, title: &str) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    f.render_widget(Clear, r);
    let block = Block::new().borders(Borders::ALL).title(format!(" {title} "));
    let inner = block.inner(r);
    f.render_widget(block, r);
    inner
}

fn draw_help(f: &mut Frame, area: Rect) {
    let inner = popup(f, area, 72, HELP.len() as u16 + 4, "keys");
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![Span::styled(format!("{k:<25} "), Style::new().fg(Color::Cyan)), Span::raw(*what)])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled("any key closes this", Style::new().fg(Color::DarkGray)));
    f.render_widget(Paragraph::new(lines), inner);
}

fn draw_confirm(f: &mut Frame, area: Rect, question: &str) {
    let inner = popup(f, area, 60, 6, "confirm");
    let lines = vec![
        Line::raw(question.to_string()),
        Line::raw(""),
        Line::styled("y: yes    any other key: no", Style::new().fg(Color::DarkGray)),
    ];
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
}

fn draw_form(f: &mut Frame, area: Rect, form: &Form) {
    let inner = popup(f, area, 60, form.fields.len() as u16 + 6, "create a VM");
    let mut lines: Vec<Line> = form
        .fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let focused = i == form.focus;
            let label = Span::styled(
                format!("{}{:<11}", if focused { "› " } else { "  " }, field.label),
                if focused { Style::new().add_modifier(Modifier::BOLD) } else { Style::new() },
            );
            let value = match field.toggle {
                Some(on) => Span::raw(if on { "[x]" } else { "[ ]" }),
                None if field.value.is_empty() => Span::styled(
                    format!("{}{}", if focused { "▏" } else { "" }, field.hint),
                    Style::new().fg(Color::DarkGray),
                ),
                None => Span::raw(format!("{}{}", field.value, if focused { "▏" } else { "" })),
            };
            Line::from(vec![label, value])
        })
        .collect();
    lines.push(Line::raw(""));
    if form.submitting {
        lines.push(Line::styled("creating…", Style::new().fg(Color::Yellow)));
    } else if let Some(e) = &form.error {
        lines.push(Line::styled(e.clone(), Style::new().fg(Color::Red)));
    } else {
        lines.push(Line::raw(""));
    }
    lines.push(Line::styled("Tab/↑↓ field  Space toggle  Enter create  Esc cancel", Style::new().fg(Color::DarkGray)));
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
