//! Loader for the UCI "Online Retail" data set that `shop demo` replays.
//!
//! The file is a real year of web-shop invoice lines and carries real-world mess (see
//! `data/online-retail/README.md`). The demo needs clean sales: whole invoices of goods with a
//! positive quantity and price, one line per sku, and a catalogue with one name and one price per
//! sku. Every row or invoice this loader drops or repairs is counted in [`MessReport`], so the
//! demo can say exactly what it did with the data instead of silently "cleaning" it.
//!
//! Each row is rejected under the *first* rule that rejects it, in this order: malformed CSV,
//! cancellation, unparseable field, quantity <= 0, zero price, negative price, non-goods stock
//! code, invalid stock code. The order is chosen so the counts read naturally: a cancellation
//! is counted as a cancellation even though its quantity is negative, and the "Adjust bad debt"
//! rows are counted as negative prices even though their stock code (`B`) is also non-goods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::NaiveDateTime;
use csv::ByteRecord;
use flate2::read::MultiGzDecoder;

/// Where the shipped data set lives, relative to the repository root, because `shop demo` is run
/// from the checkout and the data is committed next to the code (it is not downloaded at run time).
pub const DEFAULT_PATH: &str = "data/online-retail/online_retail.csv.gz";

/// Stock codes that are not goods: postage (`POST`, `DOT` = dotcom postage), manual entries
/// (`M`, `m`), discounts (`D`), samples (`S`), bad-debt adjustments (`B`), carriage (`C2`), bank
/// and marketplace fees, a charity commission (`CRUK`), cushion pads sold at a token price
/// (`PADS`) and party bags (`DCGSSBOY`, `DCGSSGIRL`). They are skipped because they have no stock
/// to reserve and no stable price, so replaying them through inventory and checkout would be
/// meaningless. Matching is exact and case-sensitive, like every sku in this loader.
const NON_GOODS: &[&str] = &[
    "POST",
    "DOT",
    "M",
    "m",
    "D",
    "S",
    "B",
    "C2",
    "BANK CHARGES",
    "AMAZONFEE",
    "CRUK",
    "PADS",
    "DCGSSBOY",
    "DCGSSGIRL",
];

/// Gift vouchers (`gift_0001_10` .. `gift_0001_50`) are money, not goods: skipped like
/// [`NON_GOODS`]. A prefix because the suffix is the voucher's face value.
const GIFT_VOUCHER_PREFIX: &str = "gift_0001_";

/// The longest sku accepted. Real codes are at most 12 characters; the cap exists so a corrupt
/// row cannot smuggle an arbitrarily long key into the services' sku columns and URLs.
const MAX_SKU_LEN: usize = 64;

/// `InvoiceDate` format in the shipped CSV: UK local time with no zone, so it is kept naive
/// rather than guessing an offset (the demo only needs the order and spacing of invoices).
const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The columns the loader needs, found by header name rather than position so a re-export
/// with reordered or extra columns still loads (`Country` is not needed and not required).
const COL_INVOICE_NO: &str = "InvoiceNo";
const COL_STOCK_CODE: &str = "StockCode";
const COL_DESCRIPTION: &str = "Description";
const COL_QUANTITY: &str = "Quantity";
const COL_INVOICE_DATE: &str = "InvoiceDate";
const COL_UNIT_PRICE: &str = "UnitPrice";
const COL_CUSTOMER_ID: &str = "CustomerID";

/// The cleaned data set: what `shop demo` replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Kept invoices sorted by `(date, invoice_no)`: the replay order. Sorting by invoice number
    /// on ties makes the order total, so two loads of the same file replay identically.
    pub invoices: Vec<Invoice>,
    /// One product per sku that appears in a kept line, sorted by sku (byte order, so `85123A`
    /// and `85123a` are distinct and adjacent). Products never sold in a kept line are left out
    /// because the demo has no use for a catalogue entry nobody buys.
    pub products: Vec<Product>,
    /// What was skipped or repaired, and how often.
    pub mess: MessReport,
}

/// One checkout: the kept rows of one `InvoiceNo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub invoice_no: String,
    /// The earliest timestamp among the invoice's kept rows. Some invoices' rows straddle a
    /// minute boundary (the till took more than a minute); the earliest is when the checkout
    /// started, which is when the replay should place it.
    pub date: NaiveDateTime,
    /// `None` for anonymous (guest) checkouts: a quarter of all rows have no `CustomerID`, and
    /// dropping them would throw away a quarter of the sales, so they are kept.
    pub customer_id: Option<String>,
    /// One line per sku, in the order each sku first appears on the invoice, because the
    /// services expect a cart to hold a sku once and the first-seen order is the closest thing
    /// to the order the customer added items.
    pub lines: Vec<InvoiceLine>,
}

/// One sku on an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    pub sku: String,
    /// Always > 0: the sum of the quantities of every kept row for this sku on the invoice.
    pub quantity: i64,
    /// The price this invoice charged (its first row for the sku), in pence. Kept for
    /// information: it can differ from the catalogue price, because prices changed during the
    /// year and wholesale quantities were discounted.
    pub unit_price_cents: i64,
}

/// A catalogue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub sku: String,
    /// The description of the sku's first sale (in replay order), so the name is the one the
    /// shop used when the product was first sold; see [`MessReport::skus_named_from_other_row`]
    /// for the fallback.
    pub name: String,
    /// The price of the sku's first sale in replay order, in pence. One price per product is
    /// what a catalogue needs; the first sale's price is the one a shopper replaying the year
    /// from its start would have seen.
    pub unit_price_cents: i64,
}

/// How much mess the loader met, counted per reason so the demo can report it.
///
/// Row counters are exclusive: each skipped row is counted under the first reason that rejected
/// it, so `rows_read == rows_kept + (sum of the "skipped" row counters)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessReport {
    /// Data rows read (header excluded). A total, not a reason: not in [`MessReport::entries`].
    pub rows_read: u64,
    /// Rows that became (part of) an invoice line. A total, not a reason: not in `entries`.
    pub rows_kept: u64,
    /// Rows with the wrong number of fields, or a needed field that is not UTF-8: skipped
    /// rather than failing the load, because one corrupt line should not block the demo.
    pub malformed_rows: u64,
    /// Rows of cancellation invoices (`InvoiceNo` starting with `C`): skipped, because they
    /// reverse an earlier sale rather than being a checkout, and the demo replays checkouts.
    pub cancellation_rows: u64,
    /// Rows with a quantity, price or date that does not parse (or no `InvoiceNo`): skipped,
    /// counted, never a panic.
    pub unparseable_rows: u64,
    /// Non-cancellation rows with quantity <= 0 (stock write-offs such as "damaged", "found"):
    /// skipped, because they are inventory adjustments, not sales.
    pub non_positive_quantity_rows: u64,
    /// Rows with unit price 0 (free samples, manual adjustments): skipped, because a free line
    /// says nothing about a price and would give the product a zero catalogue price.
    pub zero_price_rows: u64,
    /// Rows with a negative unit price ("Adjust bad debt"): skipped, accounting entries.
    pub negative_price_rows: u64,
    /// Rows whose stock code is postage, a fee, a discount, a voucher etc.: skipped (see
    /// [`NON_GOODS`]).
    pub non_goods_rows: u64,
    /// Rows whose stock code is longer than 64 characters or has characters outside
    /// `[A-Za-z0-9_-]`: skipped, because skus end up in URLs, logs and database keys.
    pub invalid_sku_rows: u64,
    /// Non-cancellation invoices all of whose rows were skipped (e.g. a postage-only invoice):
    /// left out, since an empty checkout cannot be replayed.
    pub invoices_all_rows_skipped: u64,
    /// Rows that repeat a sku already on the same invoice: merged into that sku's first line
    /// (quantities summed, first price kept), since a cart holds a sku once.
    pub merged_rows: u64,
    /// Of `merged_rows`, those whose price differed from the first row's (the first is kept).
    pub merged_rows_price_differs: u64,
    /// Kept invoices with no `CustomerID` on any kept row: replayed as anonymous checkouts.
    pub invoices_without_customer: u64,
    /// Kept invoices whose kept rows name different customers: the first is used.
    pub invoices_customer_conflict: u64,
    /// Kept invoices whose kept rows carry more than one timestamp: the earliest is used.
    pub invoices_spanning_timestamps: u64,
    /// Skus sold (in kept rows) at more than one price: the catalogue uses the first sale's.
    pub skus_with_several_prices: u64,
    /// Kept rows with a positive price under half a penny (e.g. `0.001`), which would round to
    /// 0p: raised to 1p so a sold product never costs nothing.
    pub prices_raised_to_one_cent: u64,
    /// Skus whose first sale has no description, named by the first non-empty description seen
    /// for the sku anywhere in the file (any row, even a skipped one), because a real name beats
    /// a code.
    pub skus_named_from_other_row: u64,
    /// Skus with no description anywhere in the file: named by the sku itself, so every
    /// product has a non-empty name.
    pub skus_named_by_sku: u64,
}

impl MessReport {
    /// `(human-readable reason, count)` for every reason, in a fixed order (row rejections in
    /// the order they are tested, then invoice- and sku-level repairs). Zero counts are
    /// included so the report has the same shape for every input and can be diffed.
    pub fn entries(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("malformed CSV rows, skipped", self.malformed_rows),
            (
                "cancellation rows (InvoiceNo C...), skipped",
                self.cancellation_rows,
            ),
            (
                "unparseable rows (bad quantity, price, date or InvoiceNo), skipped",
                self.unparseable_rows,
            ),
            (
                "rows with quantity <= 0, skipped",
                self.non_positive_quantity_rows,
            ),
            ("rows with zero price, skipped", self.zero_price_rows),
            (
                "rows with negative price, skipped",
                self.negative_price_rows,
            ),
            (
                "rows with non-goods stock codes (postage, fees, vouchers...), skipped",
                self.non_goods_rows,
            ),
            (
                "rows with invalid stock codes (over 64 chars or not [A-Za-z0-9_-]), skipped",
                self.invalid_sku_rows,
            ),
            (
                "invoices with every row skipped, dropped",
                self.invoices_all_rows_skipped,
            ),
            (
                "rows repeating a sku on an invoice, merged",
                self.merged_rows,
            ),
            (
                "merged rows at a different price (first price kept)",
                self.merged_rows_price_differs,
            ),
            (
                "invoices without a customer, kept as anonymous",
                self.invoices_without_customer,
            ),
            (
                "invoices naming several customers (first kept)",
                self.invoices_customer_conflict,
            ),
            (
                "invoices spanning several timestamps (earliest used)",
                self.invoices_spanning_timestamps,
            ),
            (
                "skus sold at several prices (catalogue uses first sale)",
                self.skus_with_several_prices,
            ),
            (
                "rows priced under half a penny, raised to 1p",
                self.prices_raised_to_one_cent,
            ),
            (
                "skus named from another row's description",
                self.skus_named_from_other_row,
            ),
            (
                "skus with no description, named by sku",
                self.skus_named_by_sku,
            ),
        ]
    }
}

/// Loads the gzip-compressed CSV at `path` (normally [`DEFAULT_PATH`]).
///
/// The file is decompressed while it is parsed, never unpacked to disk or memory, because the
/// repo ships it compressed (7.5 MB instead of 47 MB). Errors name the path, since the usual
/// failure is running `shop demo` from outside the repository root.
pub fn load(path: &Path) -> Result<Dataset> {
    let file = File::open(path)
        .with_context(|| format!("opening the Online Retail data set {}", path.display()))?;
    // Multi-member aware, so a file re-compressed by a parallel gzip still reads to the end.
    load_from_reader(MultiGzDecoder::new(file))
        .with_context(|| format!("loading the Online Retail data set {}", path.display()))
}

/// Loads a plain (uncompressed) CSV with the Online Retail header; see the module docs for the
/// rules. Only I/O errors and a header missing a needed column fail the load: bad rows are
/// skipped and counted in [`MessReport`], so one corrupt line never blocks the demo.
pub fn load_from_reader<R: Read>(csv: R) -> Result<Dataset> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        // Rows with a wrong field count are counted as malformed instead of aborting the load.
        .flexible(true)
        .from_reader(csv);
    let columns = Columns::from_headers(reader.byte_headers().context("reading the CSV header")?)?;

    let mut builder = Builder::default();
    // One record buffer reused for every row: the hot loop borrows `&str`s out of it and only
    // allocates for things that are new (an invoice, a sku, a description).
    let mut record = ByteRecord::new();
    loop {
        let more = reader.read_byte_record(&mut record).with_context(|| {
            format!(
                "reading CSV record {}",
                builder.mess.rows_read.saturating_add(1)
            )
        })?;
        if !more {
            break;
        }
        builder.mess.rows_read += 1;
        builder.row(&record, &columns);
    }
    Ok(builder.finish())
}

impl Dataset {
    /// The first `n` invoices in date order (ties by invoice_no), and only the products they use.
    ///
    /// For a quick demo run over a slice of the year. It re-sorts rather than trusting that
    /// `invoices` is sorted, because the fields are public and may have been edited. Products
    /// keep their full-year catalogue name and price (the slice is the start of the same
    /// shop, not a different one), and `mess` is the full load's report, since it describes
    /// the file, not the slice.
    pub fn first_invoices(&self, n: usize) -> Dataset {
        let mut order: Vec<&Invoice> = self.invoices.iter().collect();
        order.sort_by(|a, b| (a.date, &a.invoice_no).cmp(&(b.date, &b.invoice_no)));
        let invoices: Vec<Invoice> = order.into_iter().take(n).cloned().collect();
        let used: HashSet<&str> = invoices
            .iter()
            .flat_map(|invoice| invoice.lines.iter().map(|line| line.sku.as_str()))
            .collect();
        let products = self
            .products
            .iter()
            .filter(|product| used.contains(product.sku.as_str()))
            .cloned()
            .collect();
        Dataset {
            invoices,
            products,
            mess: self.mess.clone(),
        }
    }

    /// Units of each sku sold by these invoices.
    ///
    /// This is what the demo uses to derive opening stock (the file has no stock levels); a
    /// `BTreeMap` so iteration is sorted by sku and output is reproducible.
    pub fn units_by_sku(&self) -> BTreeMap<String, i64> {
        let mut units = BTreeMap::new();
        for line in self.invoices.iter().flat_map(|invoice| &invoice.lines) {
            *units.entry(line.sku.clone()).or_insert(0) += line.quantity;
        }
        units
    }
}

/// Column positions found from the header.
struct Columns {
    invoice_no: usize,
    stock_code: usize,
    description: usize,
    quantity: usize,
    invoice_date: usize,
    unit_price: usize,
    customer_id: usize,
    /// The header's field count: a row with another count is malformed, because with standard
    /// quoting a wrong count means the row's fields cannot be trusted to be in their columns.
    width: usize,
}

impl Columns {
    fn from_headers(headers: &ByteRecord) -> Result<Self> {
        let names: Vec<&str> = headers
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let name = std::str::from_utf8(name).unwrap_or("");
                // Tolerate a UTF-8 byte-order mark, which spreadsheet exports often add.
                let name = if i == 0 {
                    name.trim_start_matches('\u{feff}')
                } else {
                    name
                };
                name.trim()
            })
            .collect();
        let find = |wanted: &str| -> Result<usize> {
            match names.iter().position(|name| *name == wanted) {
                Some(i) => Ok(i),
                None => bail!(
                    "the CSV header has no {wanted} column (header: {})",
                    names.join(",")
                ),
            }
        };
        Ok(Self {
            invoice_no: find(COL_INVOICE_NO)?,
            stock_code: find(COL_STOCK_CODE)?,
            description: find(COL_DESCRIPTION)?,
            quantity: find(COL_QUANTITY)?,
            invoice_date: find(COL_INVOICE_DATE)?,
            unit_price: find(COL_UNIT_PRICE)?,
            customer_id: find(COL_CUSTOMER_ID)?,
            width: names.len(),
        })
    }
}

/// The fields of one row, trimmed, borrowed from the reused record.
struct RawRow<'a> {
    invoice_no: &'a str,
    sku: &'a str,
    description: &'a str,
    quantity: &'a str,
    date: &'a str,
    price: &'a str,
    customer_id: &'a str,
}

impl<'a> RawRow<'a> {
    /// `None` if the row is malformed (wrong width or a needed field not UTF-8).
    fn parse(record: &'a ByteRecord, columns: &Columns) -> Option<Self> {
        if record.len() != columns.width {
            return None;
        }
        let field = |i: usize| -> Option<&'a str> {
            std::str::from_utf8(record.get(i)?).ok().map(str::trim)
        };
        Some(Self {
            invoice_no: field(columns.invoice_no)?,
            sku: field(columns.stock_code)?,
            description: field(columns.description)?,
            quantity: field(columns.quantity)?,
            date: field(columns.invoice_date)?,
            price: field(columns.unit_price)?,
            customer_id: field(columns.customer_id)?,
        })
    }
}

/// A parsed `UnitPrice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Price {
    Zero,
    Negative,
    /// A price > 0, rounded half up to whole pence; may be 0 for prices under half a penny.
    Positive {
        cents: i64,
    },
}

/// Parses a plain decimal (`2.55`, `0.001`, `-11062.06`, `3`) exactly, without going through
/// `f64`, because binary floating point turns `2.675` into 2.67499.. and rounds it the wrong way.
/// Rounds half up on the third decimal (`x.xx5` and above go up). Rejects exponents, thousands
/// separators and anything else: `None` means unparseable.
fn parse_price(text: &str) -> Option<Price> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let nonzero = whole.bytes().chain(fraction.bytes()).any(|b| b != b'0');
    if !nonzero {
        return Some(Price::Zero);
    }
    if negative {
        return Some(Price::Negative);
    }
    let mut cents: i64 = 0;
    for b in whole.bytes() {
        cents = cents.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    let mut fraction_digits = fraction.bytes().map(|b| i64::from(b - b'0'));
    let pence = fraction_digits.next().unwrap_or(0) * 10 + fraction_digits.next().unwrap_or(0);
    let round_up = fraction_digits.next().unwrap_or(0) >= 5;
    cents = cents
        .checked_mul(100)?
        .checked_add(pence)?
        .checked_add(i64::from(round_up))?;
    Some(Price::Positive { cents })
}

/// Whether `sku` is something other than goods (postage, fees, vouchers...).
fn is_non_goods(sku: &str) -> bool {
    NON_GOODS.contains(&sku) || sku.starts_with(GIFT_VOUCHER_PREFIX)
}

/// Whether `sku` is safe to use verbatim as a key: 1 to [`MAX_SKU_LEN`] characters of
/// `[A-Za-z0-9_-]`. Case is preserved and significant, so the data set is replayed exactly as
/// recorded. The file has 112 pairs of codes differing only in case (`85123A`/`85123a`, 109 of
/// them both in kept rows) and most pairs share a description, so they are probably one product
/// keyed twice; folding them would be a guess about the shop's till, so it is not done here.
fn is_valid_sku(sku: &str) -> bool {
    !sku.is_empty()
        && sku.len() <= MAX_SKU_LEN
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Interns strings so the hot loop stores small ids instead of allocating per row.
#[derive(Default)]
struct Interner {
    ids: HashMap<Box<str>, usize>,
    strings: Vec<Box<str>>,
}

impl Interner {
    fn intern(&mut self, text: &str) -> usize {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.strings.len();
        self.strings.push(text.into());
        self.ids.insert(text.into(), id);
        id
    }

    fn get(&self, id: usize) -> &str {
        &self.strings[id]
    }
}

/// A kept line being assembled; strings are interned ids.
struct LineDraft {
    sku: usize,
    quantity: i64,
    unit_price_cents: i64,
    /// The first non-empty description among the rows merged into this line.
    description: Option<usize>,
}

/// A kept invoice being assembled.
struct InvoiceDraft {
    invoice_no: String,
    date: NaiveDateTime,
    spans_timestamps: bool,
    customer_id: Option<String>,
    customer_conflict: bool,
    lines: Vec<LineDraft>,
}

/// Per-sku facts gathered from kept rows.
#[derive(Default, Clone, Copy)]
struct SkuPrices {
    first: Option<i64>,
    several: bool,
}

#[derive(Default)]
struct Builder {
    mess: MessReport,
    skus: Interner,
    descriptions: Interner,
    /// First non-empty description per sku id, over every well-formed row of the file.
    first_description: Vec<Option<usize>>,
    sku_prices: Vec<SkuPrices>,
    /// Every non-cancellation invoice number seen, with its draft once a row of it is kept;
    /// those still `None` at the end had every row skipped.
    invoice_index: HashMap<Box<str>, Option<usize>>,
    drafts: Vec<InvoiceDraft>,
    /// `(draft, sku id) -> line index`, so merging a repeated sku is O(1) even on the
    /// 1,000-line invoices the file has.
    line_index: HashMap<(usize, usize), usize>,
    /// The last date text parsed and its value: rows of one invoice share a timestamp, so
    /// this skips most of the date parsing.
    last_date: Option<(String, NaiveDateTime)>,
}

impl Builder {
    fn sku_id(&mut self, sku: &str) -> usize {
        let id = self.skus.intern(sku);
        if id == self.first_description.len() {
            self.first_description.push(None);
            self.sku_prices.push(SkuPrices::default());
        }
        id
    }

    fn parse_date(&mut self, text: &str) -> Option<NaiveDateTime> {
        if let Some((last_text, last)) = &self.last_date
            && last_text == text
        {
            return Some(*last);
        }
        let date = NaiveDateTime::parse_from_str(text, DATE_FORMAT).ok()?;
        match &mut self.last_date {
            Some((last_text, last)) => {
                last_text.clear();
                last_text.push_str(text);
                *last = date;
            }
            None => self.last_date = Some((text.to_owned(), date)),
        }
        Some(date)
    }

    /// Applies the rules to one row: counts it under the first reason that rejects it, or adds
    /// it to its invoice.
    fn row(&mut self, record: &ByteRecord, columns: &Columns) {
        let Some(row) = RawRow::parse(record, columns) else {
            self.mess.malformed_rows += 1;
            return;
        };

        // Remember the first description of every sku before any rule can reject the row:
        // the fallback name may come from any row, a cancellation included.
        if !row.description.is_empty() && is_valid_sku(row.sku) {
            let sku = self.sku_id(row.sku);
            if self.first_description[sku].is_none() {
                self.first_description[sku] = Some(self.descriptions.intern(row.description));
            }
        }

        if row.invoice_no.starts_with('C') {
            self.mess.cancellation_rows += 1;
            return;
        }
        if row.invoice_no.is_empty() {
            self.mess.unparseable_rows += 1;
            return;
        }
        if !self.invoice_index.contains_key(row.invoice_no) {
            self.invoice_index.insert(row.invoice_no.into(), None);
        }

        let (Ok(quantity), Some(price), Some(date)) = (
            row.quantity.parse::<i64>(),
            parse_price(row.price),
            self.parse_date(row.date),
        ) else {
            self.mess.unparseable_rows += 1;
            return;
        };
        if quantity <= 0 {
            self.mess.non_positive_quantity_rows += 1;
            return;
        }
        let cents = match price {
            Price::Zero => {
                self.mess.zero_price_rows += 1;
                return;
            }
            Price::Negative => {
                self.mess.negative_price_rows += 1;
                return;
            }
            Price::Positive { cents } => cents,
        };
        if is_non_goods(row.sku) {
            self.mess.non_goods_rows += 1;
            return;
        }
        if !is_valid_sku(row.sku) {
            self.mess.invalid_sku_rows += 1;
            return;
        }
        self.keep(row, quantity, cents, date);
    }

    fn keep(&mut self, row: RawRow<'_>, quantity: i64, cents: i64, date: NaiveDateTime) {
        let sku = self.sku_id(row.sku);
        let description =
            (!row.description.is_empty()).then(|| self.descriptions.intern(row.description));
        let customer_id = (!row.customer_id.is_empty()).then_some(row.customer_id);

        let draft_index = match self.invoice_index.get(row.invoice_no).copied().flatten() {
            Some(index) => index,
            None => {
                let index = self.drafts.len();
                self.drafts.push(InvoiceDraft {
                    invoice_no: row.invoice_no.to_owned(),
                    date,
                    spans_timestamps: false,
                    customer_id: None,
                    customer_conflict: false,
                    lines: Vec::new(),
                });
                self.invoice_index
                    .insert(row.invoice_no.into(), Some(index));
                index
            }
        };
        let draft = &mut self.drafts[draft_index];

        match self.line_index.get(&(draft_index, sku)) {
            Some(&line_index) => {
                let line = &mut draft.lines[line_index];
                let Some(total) = line.quantity.checked_add(quantity) else {
                    // Only a corrupt file can overflow an i64 of units: treat it as a bad number.
                    self.mess.unparseable_rows += 1;
                    return;
                };
                line.quantity = total;
                line.description = line.description.or(description);
                self.mess.merged_rows += 1;
                if line.unit_price_cents != cents.max(1) {
                    self.mess.merged_rows_price_differs += 1;
                }
            }
            None => {
                self.line_index
                    .insert((draft_index, sku), draft.lines.len());
                draft.lines.push(LineDraft {
                    sku,
                    quantity,
                    unit_price_cents: cents.max(1),
                    description,
                });
            }
        }

        // The row is now part of the data set: record what it says about the invoice and sku.
        self.mess.rows_kept += 1;
        if cents == 0 {
            self.mess.prices_raised_to_one_cent += 1;
        }
        let cents = cents.max(1);
        if date != draft.date {
            draft.spans_timestamps = true;
            draft.date = draft.date.min(date);
        }
        match (&draft.customer_id, customer_id) {
            (None, Some(customer)) => draft.customer_id = Some(customer.to_owned()),
            (Some(first), Some(customer)) if first != customer => draft.customer_conflict = true,
            _ => {}
        }
        let prices = &mut self.sku_prices[sku];
        match prices.first {
            None => prices.first = Some(cents),
            Some(first) if first != cents => prices.several = true,
            Some(_) => {}
        }
    }

    fn finish(mut self) -> Dataset {
        self.mess.invoices_all_rows_skipped = self
            .invoice_index
            .values()
            .filter(|draft| draft.is_none())
            .count() as u64;

        let mut drafts = std::mem::take(&mut self.drafts);
        drafts.sort_by(|a, b| (a.date, &a.invoice_no).cmp(&(b.date, &b.invoice_no)));

        // The catalogue: each sku's first sale in replay order sets its price and name.
        let mut first_sale: Vec<Option<(i64, Option<usize>)>> = vec![None; self.skus.strings.len()];
        for line in drafts.iter().flat_map(|draft| &draft.lines) {
            first_sale[line.sku].get_or_insert((line.unit_price_cents, line.description));
        }
        let mut products: Vec<Product> = Vec::new();
        for (sku, sale) in first_sale.iter().enumerate() {
            let Some((unit_price_cents, description)) = *sale else {
                continue;
            };
            let name = match (description, self.first_description[sku]) {
                (Some(description), _) => self.descriptions.get(description).to_owned(),
                (None, Some(fallback)) => {
                    self.mess.skus_named_from_other_row += 1;
                    self.descriptions.get(fallback).to_owned()
                }
                (None, None) => {
                    self.mess.skus_named_by_sku += 1;
                    self.skus.get(sku).to_owned()
                }
            };
            if self.sku_prices[sku].several {
                self.mess.skus_with_several_prices += 1;
            }
            products.push(Product {
                sku: self.skus.get(sku).to_owned(),
                name,
                unit_price_cents,
            });
        }
        products.sort_by(|a, b| a.sku.cmp(&b.sku));

        let mut invoices = Vec::with_capacity(drafts.len());
        for draft in drafts {
            self.mess.invoices_without_customer += u64::from(draft.customer_id.is_none());
            self.mess.invoices_customer_conflict += u64::from(draft.customer_conflict);
            self.mess.invoices_spanning_timestamps += u64::from(draft.spans_timestamps);
            invoices.push(Invoice {
                invoice_no: draft.invoice_no,
                date: draft.date,
                customer_id: draft.customer_id,
                lines: draft
                    .lines
                    .into_iter()
                    .map(|line| InvoiceLine {
                        sku: self.skus.get(line.sku).to_owned(),
                        quantity: line.quantity,
                        unit_price_cents: line.unit_price_cents,
                    })
                    .collect(),
            });
        }

        Dataset {
            invoices,
            products,
            mess: self.mess,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";

    fn load_str(rows: &str) -> Dataset {
        load_from_reader(format!("{HEADER}{rows}").as_bytes()).expect("inline CSV loads")
    }

    fn date(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, DATE_FORMAT).unwrap()
    }

    /// The report with only the row totals zeroed, to compare against an expected report.
    fn reasons(mess: &MessReport) -> MessReport {
        MessReport {
            rows_read: 0,
            rows_kept: 0,
            ..mess.clone()
        }
    }

    fn line(sku: &str, quantity: i64, unit_price_cents: i64) -> InvoiceLine {
        InvoiceLine {
            sku: sku.into(),
            quantity,
            unit_price_cents,
        }
    }

    /// Every skipped row is counted exactly once.
    fn assert_rows_add_up(mess: &MessReport) {
        let skipped = mess.malformed_rows
            + mess.cancellation_rows
            + mess.unparseable_rows
            + mess.non_positive_quantity_rows
            + mess.zero_price_rows
            + mess.negative_price_rows
            + mess.non_goods_rows
            + mess.invalid_sku_rows;
        assert_eq!(mess.rows_read, mess.rows_kept + skipped, "{mess:#?}");
    }

    #[test]
    fn clean_rows_load_as_invoices_and_products() {
        let data = load_str(
            "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n\
             536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,United Kingdom\n",
        );
        assert_eq!(
            data.invoices,
            vec![Invoice {
                invoice_no: "536365".into(),
                date: date("2010-12-01 08:26:00"),
                customer_id: Some("17850".into()),
                lines: vec![line("85123A", 6, 255), line("71053", 6, 339)],
            }]
        );
        assert_eq!(
            data.products,
            vec![
                Product {
                    sku: "71053".into(),
                    name: "WHITE METAL LANTERN".into(),
                    unit_price_cents: 339
                },
                Product {
                    sku: "85123A".into(),
                    name: "WHITE HANGING HEART T-LIGHT HOLDER".into(),
                    unit_price_cents: 255
                },
            ]
        );
        assert_eq!(reasons(&data.mess), MessReport::default());
        assert_eq!((data.mess.rows_read, data.mess.rows_kept), (2, 2));
        assert!(data.mess.entries().iter().all(|&(_, count)| count == 0));
    }

    #[test]
    fn cancellation_rows_are_skipped() {
        let data = load_str(
            "C536379,22556,PLASTERS IN TIN CIRCUS PARADE,-12,2010-12-01 09:41:00,1.65,14527,United Kingdom\n\
             C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527,United Kingdom\n\
             536380,22556,PLASTERS IN TIN CIRCUS PARADE,12,2010-12-01 09:42:00,1.65,14527,United Kingdom\n",
        );
        assert_eq!(data.mess.cancellation_rows, 2);
        // A cancellation invoice is not counted as an invoice whose rows were all skipped.
        assert_eq!(
            reasons(&data.mess),
            MessReport {
                cancellation_rows: 2,
                ..Default::default()
            }
        );
        assert_eq!(data.invoices.len(), 1);
        assert_eq!(data.invoices[0].invoice_no, "536380");
        assert_rows_add_up(&data.mess);
    }

    #[test]
    fn non_positive_quantities_are_skipped() {
        let data = load_str(
            "536589,21777,damaged,-10,2010-12-01 16:50:00,0,,United Kingdom\n\
             536590,21777,RECIPE BOX,0,2010-12-01 16:51:00,7.95,,United Kingdom\n\
             536590,21778,RECIPE BOX 2,-1,2010-12-01 16:51:00,7.95,,United Kingdom\n\
             536590,21779,RECIPE BOX 3,1,2010-12-01 16:51:00,7.95,,United Kingdom\n",
        );
        assert_eq!(
            reasons(&data.mess),
            MessReport {
                // The first row also has price 0 but is counted once, under quantity.
                non_positive_quantity_rows: 3,
                invoices_all_rows_skipped: 1,
                invoices_without_customer: 1,
                ..Default::default()
            }
        );
        assert_eq!(data.invoices.len(), 1);
        assert_eq!(data.invoices[0].lines, vec![line("21779", 1, 795)]);
        assert_rows_add_up(&data.mess);
    }

    #[test]
    fn zero_and_negative_prices_are_skipped() {
        let data = load_str(
            "536414,22139,,56,2010-12-01 11:52:00,0,,United Kingdom\n\
             536414,22140,FREEBIE,1,2010-12-01 11:52:00,0.000,,United Kingdom\n\
             A563186,B,Adjust bad debt,1,2011-08-12 14:51:00,-11062.06,,United Kingdom\n\
             A563187,B,Adjust bad debt,1,2011-08-12 14:52:00,-11062.06,,United Kingdom\n\
             536415,22139,RETROSPOT TEA SET CERAMIC 11 PC ,1,2010-12-01 11:53:00,4.95,17850,United Kingdom\n",
        );
        assert_eq!(
            reasons(&data.mess),
            MessReport {
                zero_price_rows: 2,
                // Their sku `B` is also non-goods; the price is tested first.
                negative_price_rows: 2,
                invoices_all_rows_skipped: 3,
                ..Default::default()
            }
        );
        assert_eq!(data.invoices.len(), 1);
        // The description is trimmed.
        assert_eq!(data.products[0].name, "RETROSPOT TEA SET CERAMIC 11 PC");
        assert_rows_add_up(&data.mess);
    }

    #[test]
    fn non_goods_stock_codes_are_skipped() {
        let codes = [
            "POST",
            "DOT",
            "M",
            "m",
            "D",
            "S",
            "B",
            "C2",
            "BANK CHARGES",
            "AMAZONFEE",
            "CRUK",
            "PADS",
            "DCGSSBOY",
            "DCGSSGIRL",
            "gift_0001_10",
            "gift_0001_50",
        ];
        let mut rows: String = codes
            .iter()
            .map(|code| format!("537000,{code},FEE,1,2010-12-05 10:00:00,0.001,12345,France\n"))
            .collect();
        // Look-alikes that are goods: exact, case-sensitive matching only.
        rows.push_str("537000,POSTX,POST BOX,1,2010-12-05 10:00:00,1,12345,France\n");
        rows.push_str("537000,DCGS0003,BOXED GLASS ASHTRAY,1,2010-12-05 10:00:00,1,12345,France\n");
        rows.push_str("537000,Gift_0001_10,GIFT BOX,1,2010-12-05 10:00:00,1,12345,France\n");
        rows.push_str("537001,POST,POSTAGE,1,2010-12-05 10:01:00,18,12345,France\n");
        let data = load_str(&rows);
        assert_eq!(
            reasons(&data.mess),
            MessReport {
                non_goods_rows: codes.len() as u64 + 1,
                invoices_all_rows_skipped: 1,
                ..Default::default()
            }
        );
        let skus: Vec<&str> = data.invoices[0]
            .lines
            .iter()
            .map(|l| l.sku.as_str())
            .collect();
        assert_eq!(skus, ["POSTX", "DCGS0003", "Gift_0001_10"]);
        assert_eq!(data.invoices.len(), 1);
        assert_rows_add_up(&data.mess);
    }

    #[test]
    fn missing_customer_keeps_rows_and_counts_invoices() {
        let data = load_str(
            "536544,21773,DECORATIVE ROSE BATHROOM BOTTLE,1,2010-12-01 14:32:00,2.51,,United Kingdom\n\
             536544,21774,DECORATIVE CATS BATHROOM BOTTLE,2,2010-12-01 14:32:00,2.51,,United Kingdom\n\
             536545,21773,DECORATIVE ROSE BATHROOM BOTTLE,1,2010-12-01 14:33:00,2.51,,United Kingdom\n\
             536546,21773,DECORATIVE ROSE BATHROOM BOTTLE,1,2010-12-01 14:34:00,2.51,13000,United Kingdom\n\
             536547,21773,DECORATIVE ROSE BATHROOM BOTTLE,1,2010-12-01 14:35:00,2.51,,United Kingdom\n\
             536547,21774,DECORATIVE CATS BATHROOM BOTTLE,1,2010-12-01 14:35:00,2.51,14000,United Kingdom\n\
             536548,21773,DECORATIVE ROSE BATHROOM BOTTLE,1,2010-12-01 14:36:00,2.51,15000,United Kingdom\n\
             536548,21774,DECORATIVE CATS BATHROOM BOTTLE,1,2010-12-01 14:36:00,2.51,16000,United Kingdom\n",
        );
        assert_eq!(
            reasons(&data.mess),
            MessReport {
                invoices_without_customer: 2,
                invoices_customer_conflict: 1,
                ..Default::default()
            }
        );
        let customers: Vec<Option<&str>> = data
            .invoices
            .iter()
            .map(|invoice| invoice.customer_id.as_deref())
            .collect();
        assert_eq!(
            customers,
            [None, None, Some("13000"), Some("14000"), Some("15000")]
        );
        assert_eq!(data.invoices[0].lines.len(), 2);
        assert_eq!(data.mess.rows_kept, 8);
    }

    #[test]
    fn repeated_sku_on_an_invoice_is_merged() {
        let data = load_str(
            "536409,85116,BLACK CANDELABRA T-LIGHT HOLDER,1,2010-12-01 11:45:00,2.1,17908,United Kingdom\n\
             536409,22111,SCOTTIE DOG HOT WATER BOTTLE,1,2010-12-01 11:45:00,4.95,17908,United Kingdom\n\
             536409,85116,BLACK CANDELABRA T-LIGHT HOLDER,2,2010-12-01 11:45:00,2.1,17908,United Kingdom\n\
             536409,85116,BLACK CANDELABRA T-LIGHT HOLDER,3,2010-12-01 11:45:00,1.95,17908,United Kingdom\n\
             536410,85116,BLACK CANDELABRA T-LIGHT HOLDER,4,2010-12-01 11:46:00,2.1,17908,United Kingdom\n",
        );
        assert_eq!(
            data.invoices[0].lines,
            vec![line("85116", 6, 210), line("22111", 1, 495)]
        );
        assert_eq!(data.invoices[1].lines, vec![line("85116", 4, 210)]);
        assert_eq!(
            reasons(&data.mess),
            MessReport {
                merged_rows: 2,
                merged_rows_price_differs: 1,
                skus_with_several_prices: 1,
                ..Default::default()
            }
        );
        assert_eq!(data.units_by_sku()["85116"], 10);
        assert_rows_add_up(&data.mess);
    }

    #[test]
    fn missing_description_falls_back_to_another_row_then_to_the_sku() {
        let data = load_str(
            // 22139's first sale has no description; a later cancellation row names it.
            "536414,22139,,56,2010-12-01 11:52:00,4.25,,United Kingdom\n\
             536415,22139,,1,2010-12-01 11:53:00,4.25,,United Kingdom\n\
             C536416,22139,RETROSPOT TEA SET CERAMIC 11 PC,-1,2010-12-01 11:54:00,4.25,,United Kingdom\n\
             536417,22139,RENAMED TEA SET,1,2010-12-01 11:55:00,4.25,,United Kingdom\n\
             536418,35004G,,1,2010-12-01 11:56:00,1.25,,United Kingdom\n\
             536419,84997c,GREEN CUTLERY,1,2010-12-01 11:57:00,3.75,,United Kingdom\n\
             536420,84997c,,1,2010-12-01 11:58:00,3.75,,United Kingdom\n\
             536421,22140,  ,1,2010-12-01 11:59:00,3.75,,United Kingdom\n\
             536421,22140,MERGED NAME,1,2010-12-01 11:59:00,3.75,,United Kingdom\n",
        );
        let names: Vec<(&str, &str)> = data
            .products
            .iter()
            .map(|p| (p.sku.as_str(), p.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                // The first (merged) line's description, whitespace-only counting as missing.
                ("22139", "RETROSPOT TEA SET CERAMIC 11 PC"),
                ("22140", "MERGED NAME"),
                ("35004G", "35004G"),
                ("84997c", "GREEN CUTLERY"),
            ]
        );
        assert_eq!(data.mess.skus_named_from_other_row, 1);
        assert_eq!(data.mess.skus_named_by_sku, 1);
        assert_eq!(data.mess.cancellation_rows, 1);
    }

    #[test]
    fn catalogue_price_is_the_first_sale_in_date_order() {
        let data = load_str(
            // File order is not date order: the 2011 sale comes first in the file.
            "550000,22423,REGENCY CAKESTAND 3 TIER,1,2011-04-01 10:00:00,12.75,,United Kingdom\n\
             536400,22423,REGENCY CAKESTAND 3 TIER,4,2010-12-01 10:00:00,10.95,,United Kingdom\n\
             536401,22423,REGENCY CAKESTAND 3 TIER,1,2010-12-01 10:00:00,12.75,,United Kingdom\n\
             536402,22424,ENAMEL BREAD BIN CREAM,1,2010-12-01 10:00:00,12.75,,United Kingdom\n",
        );
        let order: Vec<&str> = data
            .invoices
            .iter()
            .map(|i| i.invoice_no.as_str())
            .collect();
        assert_eq!(order, ["536400", "536401", "536402", "550000"]);
        assert_eq!(data.products[0].unit_price_cents, 1095);
        // Each line keeps its own invoice's price.
        assert_eq!(data.invoices[1].lines, vec![line("22423", 1, 1275)]);
        assert_eq!(data.invoices[3].lines, vec![line("22423", 1, 1275)]);
        assert_eq!(data.mess.skus_with_several_prices, 1);
    }

    #[test]
    fn prices_round_half_up_to_cents_and_never_to_zero() {
        assert_eq!(parse_price("2.55"), Some(Price::Positive { cents: 255 }));
        assert_eq!(parse_price("2.555"), Some(Price::Positive { cents: 256 }));
        assert_eq!(parse_price("2.5549"), Some(Price::Positive { cents: 255 }));
        // 2.675 is 2.67499... as an f64; parsed exactly it rounds up.
        assert_eq!(parse_price("2.675"), Some(Price::Positive { cents: 268 }));
        assert_eq!(parse_price("2.5"), Some(Price::Positive { cents: 250 }));
        assert_eq!(parse_price("3"), Some(Price::Positive { cents: 300 }));
        assert_eq!(parse_price("3."), Some(Price::Positive { cents: 300 }));
        assert_eq!(parse_price(".5"), Some(Price::Positive { cents: 50 }));
        assert_eq!(parse_price("+1.999"), Some(Price::Positive { cents: 200 }));
        assert_eq!(parse_price("0.001"), Some(Price::Positive { cents: 0 }));
        assert_eq!(parse_price("0"), Some(Price::Zero));
        assert_eq!(parse_price("-0.00"), Some(Price::Zero));
        assert_eq!(parse_price("-11062.06"), Some(Price::Negative));
        for bad in [
            "",
            ".",
            "-",
            "1e3",
            "1,5",
            "1.2.3",
            "£2",
            "NaN",
            "99999999999999999999",
        ] {
            assert_eq!(parse_price(bad), None, "{bad:?}");
        }

        let data = load_str(
            "536500,10002,INFLATABLE POLITICAL GLOBE,1,2010-12-01 12:00:00,0.001,,United Kingdom\n\
             536500,10080,GROOVY CACTUS INFLATABLE,1,2010-12-01 12:00:00,0.005,,United Kingdom\n\
             536500,10120,DOGGY RUBBER,1,2010-12-01 12:00:00,0.004,,United Kingdom\n\
             536500,10123C,HEARTS WRAPPING TAPE,1,2010-12-01 12:00:00,0.645,,United Kingdom\n",
        );
        let prices: Vec<i64> = data.invoices[0]
            .lines
            .iter()
            .map(|l| l.unit_price_cents)
            .collect();
        assert_eq!(prices, [1, 1, 1, 65]);
        // 0.005 rounds to 1p by itself; only 0.001 and 0.004 needed raising.
        assert_eq!(data.mess.prices_raised_to_one_cent, 2);
        assert!(data.products.iter().all(|p| p.unit_price_cents >= 1));
    }

    #[test]
    fn unparseable_and_malformed_rows_are_counted_not_fatal() {
        let data = load_str(
            "536600,22000,BAD QTY,x,2010-12-01 12:00:00,1.00,,United Kingdom\n\
             536600,22001,FRACTIONAL QTY,1.5,2010-12-01 12:00:00,1.00,,United Kingdom\n\
             536600,22002,BAD PRICE,1,2010-12-01 12:00:00,1e3,,United Kingdom\n\
             536600,22003,BAD DATE,1,2010-13-01 12:00:00,1.00,,United Kingdom\n\
             536600,22004,SHORT DATE,1,01/12/2010 12:00,1.00,,United Kingdom\n\
             ,22005,NO INVOICE,1,2010-12-01 12:00:00,1.00,,United Kingdom\n\
             536600,22006,TOO FEW FIELDS,1,2010-12-01 12:00:00\n\
             536600,22007,TOO,MANY,1,2010-12-01 12:00:00,1.00,,United Kingdom\n\
             536601,22008,GOOD,1,2010-12-01 12:00:00,1.00,,United Kingdom\n",
        );
        let mut bytes = format!("{HEADER}536602,22009,").into_bytes();
        bytes.extend_from_slice(b"NOT UTF8 \xff,1,2010-12-01 12:00:00,1.00,,United Kingdom\n");
        let not_utf8 = load_from_reader(bytes.as_slice()).unwrap();
        assert_eq!(not_utf8.mess.malformed_rows, 1);
        assert!(not_utf8.invoices.is_empty());

        assert_eq!(
            reasons(&data.mess),
            MessReport {
                unparseable_rows: 6,
                malformed_rows: 2,
                invoices_all_rows_skipped: 1,
                invoices_without_customer: 1,
                ..Default::default()
            }
        );
        assert_eq!(data.invoices.len(), 1);
        assert_eq!(data.invoices[0].invoice_no, "536601");
        assert_rows_add_up(&data.mess);
    }

    #[test]
    fn invoices_with_every_row_skipped_are_dropped() {
        let data = load_str(
            "536700,POST,POSTAGE,1,2010-12-01 12:00:00,18,12583,France\n\
             536700,22326,ROUND SNACK BOXES,0,2010-12-01 12:00:00,2.95,12583,France\n\
             536701,22326,ROUND SNACK BOXES,24,2010-12-01 12:01:00,2.95,12583,France\n\
             536702,22326,ROUND SNACK BOXES,24,2010-12-01 12:02:00,0,12583,France\n",
        );
        assert_eq!(data.mess.invoices_all_rows_skipped, 2);
        let kept: Vec<&str> = data
            .invoices
            .iter()
            .map(|i| i.invoice_no.as_str())
            .collect();
        assert_eq!(kept, ["536701"]);
    }

    #[test]
    fn invalid_stock_codes_are_skipped() {
        let long_ok = "A".repeat(64);
        let too_long = "A".repeat(65);
        let data = load_str(&format!(
            "536800,{long_ok},LONG,1,2010-12-01 12:00:00,1,,United Kingdom\n\
             536800,{too_long},TOO LONG,1,2010-12-01 12:00:00,1,,United Kingdom\n\
             536800,AB CD,SPACE,1,2010-12-01 12:00:00,1,,United Kingdom\n\
             536800,ABÇ,ACCENT,1,2010-12-01 12:00:00,1,,United Kingdom\n\
             536800,A/B,SLASH,1,2010-12-01 12:00:00,1,,United Kingdom\n\
             536800,,EMPTY,1,2010-12-01 12:00:00,1,,United Kingdom\n\
             536800,a_b-1,SEPARATORS,1,2010-12-01 12:00:00,1,,United Kingdom\n"
        ));
        assert_eq!(data.mess.invalid_sku_rows, 5);
        let skus: Vec<&str> = data.products.iter().map(|p| p.sku.as_str()).collect();
        assert_eq!(skus, [long_ok.as_str(), "a_b-1"]);
        assert_rows_add_up(&data.mess);
    }

    #[test]
    fn skus_are_case_sensitive() {
        let data = load_str(
            "536900,85123A,WHITE HANGING HEART T-LIGHT HOLDER,1,2010-12-01 12:00:00,2.55,,United Kingdom\n\
             536900,85123a,CREAM HANGING HEART T-LIGHT HOLDER,1,2010-12-01 12:00:00,2.95,,United Kingdom\n",
        );
        assert_eq!(data.invoices[0].lines.len(), 2);
        assert_eq!(data.mess.merged_rows, 0);
        let skus: Vec<&str> = data.products.iter().map(|p| p.sku.as_str()).collect();
        assert_eq!(skus, ["85123A", "85123a"]);
    }

    #[test]
    fn quoted_descriptions_with_commas_and_quotes() {
        let data = load_str(
            "537000,21507,\"ELEPHANT, BIRTHDAY CARD\",12,2010-12-01 12:00:00,0.42,,United Kingdom\n\
             537000,22907,\"PACK OF 20 NAPKINS \"\"PANTRY DESIGN\"\"\",12,2010-12-01 12:00:00,0.85,,United Kingdom\n\
             537000,21232,\"FOLK ART GREETING CARD,pack/12\",\"12\",\"2010-12-01 12:00:00\",\"2.95\",\"12583\",\"United Kingdom\"\n",
        );
        let names: Vec<&str> = data.products.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "FOLK ART GREETING CARD,pack/12",
                "ELEPHANT, BIRTHDAY CARD",
                "PACK OF 20 NAPKINS \"PANTRY DESIGN\"",
            ]
        );
        assert_eq!(data.invoices[0].lines.len(), 3);
        assert_eq!(data.invoices[0].customer_id.as_deref(), Some("12583"));
        assert_eq!(reasons(&data.mess), MessReport::default());
    }

    #[test]
    fn invoices_sort_by_date_then_number_and_take_their_earliest_timestamp() {
        let data = load_str(
            "536592,21001,A,1,2010-12-01 17:06:00,1,,United Kingdom\n\
             536591,21002,B,1,2010-12-01 16:58:00,1,,United Kingdom\n\
             536591,21003,C,1,2010-12-01 16:57:00,1,,United Kingdom\n\
             536590,21004,D,1,2010-12-01 16:57:00,1,,United Kingdom\n",
        );
        let order: Vec<(&str, NaiveDateTime)> = data
            .invoices
            .iter()
            .map(|i| (i.invoice_no.as_str(), i.date))
            .collect();
        assert_eq!(
            order,
            [
                ("536590", date("2010-12-01 16:57:00")),
                ("536591", date("2010-12-01 16:57:00")),
                ("536592", date("2010-12-01 17:06:00")),
            ]
        );
        assert_eq!(data.mess.invoices_spanning_timestamps, 1);
    }

    #[test]
    fn columns_are_found_by_name() {
        let csv = "Country,UnitPrice,CustomerID,InvoiceDate,Quantity,Description,StockCode,InvoiceNo\n\
                   France,1.25,12583,2010-12-01 08:45:00,24,ALARM CLOCK BAKELIKE PINK,22727,536370\n";
        let data = load_from_reader(format!("\u{feff}{csv}").as_bytes()).unwrap();
        assert_eq!(data.invoices[0].lines, vec![line("22727", 24, 125)]);
        assert_eq!(data.invoices[0].customer_id.as_deref(), Some("12583"));

        let error = load_from_reader("InvoiceNo,StockCode,Quantity\n".as_bytes()).unwrap_err();
        assert!(error.to_string().contains("Description"), "{error:#}");
    }

    #[test]
    fn empty_input_is_an_empty_data_set() {
        let data = load_str("");
        assert!(data.invoices.is_empty() && data.products.is_empty());
        assert_eq!(data.mess, MessReport::default());
    }

    #[test]
    fn load_reads_gzip_and_errors_name_the_path() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;

        let dir = std::env::temp_dir().join(format!("shop-dataset-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gz = dir.join("small.csv.gz");
        let mut encoder = GzEncoder::new(File::create(&gz).unwrap(), Compression::fast());
        encoder
            .write_all(
                format!("{HEADER}536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,United Kingdom\n")
                    .as_bytes(),
            )
            .unwrap();
        encoder.finish().unwrap();
        let data = load(&gz).unwrap();
        assert_eq!(data.invoices[0].lines, vec![line("71053", 6, 339)]);

        let plain = dir.join("plain.csv");
        std::fs::write(&plain, HEADER).unwrap();
        let error = format!("{:#}", load(&plain).unwrap_err());
        assert!(error.contains("plain.csv"), "{error}");

        let missing = dir.join("missing.csv.gz");
        let error = format!("{:#}", load(&missing).unwrap_err());
        assert!(error.contains("missing.csv.gz"), "{error}");

        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn first_invoices_and_units_by_sku() {
        let data = load_str(
            "536402,22424,ENAMEL BREAD BIN CREAM,1,2010-12-01 10:02:00,12.75,,United Kingdom\n\
             536400,22423,REGENCY CAKESTAND 3 TIER,4,2010-12-01 10:00:00,10.95,,United Kingdom\n\
             536401,22423,REGENCY CAKESTAND 3 TIER,1,2010-12-01 10:01:00,12.75,,United Kingdom\n\
             536401,22425,SPARE,2,2010-12-01 10:01:00,1,,United Kingdom\n",
        );
        let first = data.first_invoices(2);
        let order: Vec<&str> = first
            .invoices
            .iter()
            .map(|i| i.invoice_no.as_str())
            .collect();
        assert_eq!(order, ["536400", "536401"]);
        let skus: Vec<&str> = first.products.iter().map(|p| p.sku.as_str()).collect();
        assert_eq!(skus, ["22423", "22425"]);
        // The catalogue price stays the full data set's.
        assert_eq!(first.products[0].unit_price_cents, 1095);
        assert_eq!(
            first.units_by_sku(),
            BTreeMap::from([("22423".to_owned(), 5), ("22425".to_owned(), 2)])
        );
        assert_eq!(first.mess, data.mess);
        assert_eq!(data.first_invoices(10).invoices.len(), 3);
        assert!(data.first_invoices(0).products.is_empty());
    }

    /// The shipped file, against figures computed independently from it with awk and a
    /// Python re-implementation of these rules.
    #[test]
    fn loads_the_shipped_file() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/online-retail/online_retail.csv.gz"
        ));
        let data = load(path).unwrap();
        let mess = &data.mess;
        assert_eq!(mess.rows_read, 541_909);
        assert_eq!(
            reasons(mess),
            MessReport {
                cancellation_rows: 9_288,
                non_positive_quantity_rows: 1_336,
                zero_price_rows: 1_179,
                negative_price_rows: 2,
                non_goods_rows: 2_370,
                invoices_all_rows_skipped: 2_291,
                merged_rows: 10_469,
                merged_rows_price_differs: 448,
                invoices_without_customer: 1_371,
                invoices_spanning_timestamps: 42,
                skus_with_several_prices: 3_353,
                ..Default::default()
            }
        );
        assert_rows_add_up(mess);
        assert_eq!(data.invoices.len(), 19_773);
        assert_eq!(data.products.len(), 3_905);
        let lines: usize = data.invoices.iter().map(|i| i.lines.len()).sum();
        assert_eq!(lines, 517_265);
        assert_eq!(mess.rows_kept, 517_265 + 10_469);
        let units = data.units_by_sku();
        assert_eq!(units.values().sum::<i64>(), 5_577_006);
        assert_eq!(units.len(), data.products.len());
        let revenue: i64 = data
            .invoices
            .iter()
            .flat_map(|i| &i.lines)
            .map(|l| l.quantity * l.unit_price_cents)
            .sum();
        assert_eq!(revenue, 1_027_301_538);

        let first = &data.invoices[0];
        assert_eq!(
            (first.invoice_no.as_str(), first.date, first.lines.len()),
            ("536365", date("2010-12-01 08:26:00"), 7)
        );
        let last = data.invoices.last().unwrap();
        assert_eq!(
            (last.invoice_no.as_str(), last.date),
            ("581587", date("2011-12-09 12:50:00"))
        );
        let heart = data.products.iter().find(|p| p.sku == "85123A").unwrap();
        assert_eq!(
            (heart.name.as_str(), heart.unit_price_cents),
            ("WHITE HANGING HEART T-LIGHT HOLDER", 255)
        );
        assert!(data.products.windows(2).all(|w| w[0].sku < w[1].sku));
        assert!(
            data.products
                .iter()
                .all(|p| p.unit_price_cents > 0 && !p.name.is_empty())
        );

        let hundred = data.first_invoices(100);
        assert_eq!(hundred.invoices.len(), 100);
        assert!(hundred.invoices.windows(2).all(|w| w[0].date <= w[1].date));
        assert_eq!(hundred.invoices[99].invoice_no, "536569");
        assert_eq!(hundred.products.len(), 1_102);
        let units = hundred.units_by_sku();
        let line_units: i64 = hundred
            .invoices
            .iter()
            .flat_map(|i| &i.lines)
            .map(|l| l.quantity)
            .sum();
        assert_eq!(units.values().sum::<i64>(), line_units);
        assert_eq!(line_units, 20_050);
        assert!(units.keys().eq(hundred.products.iter().map(|p| &p.sku)));
    }
}
