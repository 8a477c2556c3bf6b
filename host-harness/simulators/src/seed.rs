//! Deterministic, realistic master data for the simulators: companies with
//! addresses in several countries, people, phones, payment terms.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PREFIXES: &[&str] = &[
    "Northwind",
    "Blue Ridge",
    "Summit",
    "Harbor",
    "Granite",
    "Cedar",
    "Redwood",
    "Silverline",
    "Ironclad",
    "Lakeside",
    "Pioneer",
    "Evergreen",
    "Keystone",
    "Atlas",
    "Meridian",
    "Crescent",
    "Horizon",
    "Sterling",
    "Riverbend",
    "Oakmont",
    "Bright",
    "Falcon",
    "Vertex",
    "Copper",
    "Sapphire",
    "Juniper",
    "Orchard",
    "Bayview",
    "Highland",
    "Prairie",
];
const NOUNS: &[&str] = &[
    "Traders",
    "Logistics",
    "Foods",
    "Analytics",
    "Manufacturing",
    "Supply",
    "Health",
    "Energy",
    "Robotics",
    "Textiles",
    "Builders",
    "Pharma",
    "Software",
    "Outfitters",
    "Electric",
    "Marine",
    "Ceramics",
    "Labs",
    "Farms",
    "Media",
];
const SUFFIXES: &[&str] = &["Inc", "LLC", "Ltd", "GmbH", "Corp", "Co", "Group", "Partners"];
const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Katherine",
    "Linus",
    "Margaret",
    "Tim",
    "Barbara",
    "Dennis",
    "Frances",
    "Ken",
    "Radia",
    "Edsger",
    "Hedy",
    "John",
    "Shafi",
    "Donald",
    "Sophie",
    "Niklaus",
    "Anita",
    "José",
    "Zoë",
    "Søren",
    "Amélie",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Johnson",
    "Torvalds",
    "Hamilton",
    "Berners-Lee",
    "Liskov",
    "Ritchie",
    "Allen",
    "Thompson",
    "Perlman",
    "Dijkstra",
    "Lamarr",
    "McCarthy",
    "Goldwasser",
    "Knuth",
    "Wilson",
    "Wirth",
    "Borg",
    "García",
    "O'Neil",
    "Kierkegaard",
    "Poulain",
];
const TITLES: &[&str] =
    &["CFO", "Buyer", "Accounts Payable", "Operations Manager", "CEO", "Procurement Lead", "Controller"];
const STREETS: &[&str] = &[
    "Main St",
    "Market St",
    "Oak Ave",
    "Harbor Blvd",
    "High Street",
    "Industrial Way",
    "King St W",
    "Bahnhofstraße",
    "Elm Rd",
    "Commerce Dr",
];

/// (city, state, zip pattern; `#` a digit, `A` a letter)
type Place = (&'static str, &'static str, &'static str);

const PLACES: &[(&str, &[Place])] = &[
    (
        "US",
        &[
            ("Springfield", "IL", "627##"),
            ("Austin", "TX", "787##"),
            ("Portland", "OR", "972##"),
            ("Boston", "MA", "021##"),
            ("San Jose", "CA", "951##"),
        ],
    ),
    ("CA", &[("Toronto", "ON", "M5V #A#"), ("Vancouver", "BC", "V6B #A#")]),
    ("GB", &[("London", "", "EC1A #BB"), ("Leeds", "", "LS1 #AA")]),
    ("DE", &[("Berlin", "BE", "101##"), ("München", "BY", "803##")]),
    ("AU", &[("Sydney", "NSW", "2###"), ("Melbourne", "VIC", "3###")]),
];

/// Payment terms as NetSuite ships them: (id, name, days until due).
pub const TERMS: &[(i64, &str, i64)] = &[
    (1, "Net 15", 15),
    (2, "Net 30", 30),
    (3, "Net 60", 60),
    (4, "Due on receipt", 0),
    (5, "1% 10 Net 30", 30),
    (6, "2% 10 Net 30", 30),
];

#[derive(Debug, Clone)]
pub struct Address {
    pub addressee: String,
    pub addr1: String,
    pub addr2: Option<String>,
    pub city: String,
    pub state: Option<String>,
    pub zip: String,
    pub country: String,
}

#[derive(Debug, Clone)]
pub struct Company {
    pub entityid: String,
    pub companyname: Option<String>,
    pub isperson: bool,
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub terms: Option<i64>,
    pub isinactive: bool,
    pub billing: Option<Address>,
    pub shipping: Option<Address>,
}

#[derive(Debug, Clone)]
pub struct Person {
    pub entityid: String,
    pub firstname: String,
    pub lastname: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub title: Option<String>,
}

pub struct Seeder {
    rng: StdRng,
}

fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    list[rng.gen_range(0..list.len())]
}

fn fill(rng: &mut StdRng, pattern: &str) -> String {
    pattern
        .chars()
        .map(|c| match c {
            '#' => char::from(b'0' + rng.gen_range(0..10)),
            'A' => char::from(b'A' + rng.gen_range(0..26)),
            other => other,
        })
        .collect()
}

impl Seeder {
    pub fn new(seed: u64) -> Seeder {
        Seeder { rng: StdRng::seed_from_u64(seed) }
    }

    pub fn phone(&mut self) -> String {
        format!("+1 {}-555-{:04}", self.rng.gen_range(201..990), self.rng.gen_range(100..10000))
    }

    pub fn address(&mut self, addressee: &str) -> Address {
        let (country, places) = PLACES[if self.rng.gen_bool(0.6) { 0 } else { self.rng.gen_range(0..PLACES.len()) }];
        let (city, state, zip) = places[self.rng.gen_range(0..places.len())];
        let street = pick(&mut self.rng, STREETS);
        Address {
            addressee: addressee.to_string(),
            addr1: format!("{} {street}", self.rng.gen_range(1..9999)),
            addr2: self.rng.gen_bool(0.25).then(|| format!("Suite {}", self.rng.gen_range(100..999))),
            city: city.to_string(),
            state: (!state.is_empty()).then(|| state.to_string()),
            zip: fill(&mut self.rng, zip),
            country: country.to_string(),
        }
    }

    /// The n-th company (1-based numbering goes into entityid).
    pub fn company(&mut self, n: u64, prefix: &str) -> Company {
        let isperson = prefix == "CUST" && self.rng.gen_bool(0.08);
        let (companyname, firstname, lastname, display) = if isperson {
            let (f, l) = (pick(&mut self.rng, FIRST).to_string(), pick(&mut self.rng, LAST).to_string());
            let display = format!("{f} {l}");
            (None, Some(f), Some(l), display)
        } else {
            let name = format!(
                "{} {} {}",
                pick(&mut self.rng, PREFIXES),
                pick(&mut self.rng, NOUNS),
                pick(&mut self.rng, SUFFIXES)
            );
            (Some(name.clone()), None, None, name)
        };
        let domain: String =
            display.to_ascii_lowercase().chars().filter(char::is_ascii_alphanumeric).take(20).collect();
        let billing = self.rng.gen_bool(0.92).then(|| self.address(&display));
        let shipping = match &billing {
            Some(b) if self.rng.gen_bool(0.6) => Some(b.clone()),
            _ if self.rng.gen_bool(0.7) => Some(self.address(&display)),
            _ => None,
        };
        Company {
            entityid: format!("{prefix}-{n:06}"),
            companyname,
            isperson,
            firstname,
            lastname,
            email: self.rng.gen_bool(0.9).then(|| format!("ap@{domain}.example.com")),
            phone: self.rng.gen_bool(0.9).then(|| self.phone()),
            terms: self.rng.gen_bool(0.85).then(|| TERMS[self.rng.gen_range(0..TERMS.len())].0),
            isinactive: self.rng.gen_bool(0.03),
            billing,
            shipping,
        }
    }

    pub fn person(&mut self, n: u64) -> Person {
        let (f, l) = (pick(&mut self.rng, FIRST).to_string(), pick(&mut self.rng, LAST).to_string());
        let local: String = format!("{f}.{l}")
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        Person {
            entityid: format!("{f} {l} {n}"),
            email: self.rng.gen_bool(0.9).then(|| format!("{local}{n}@example.com")),
            phone: self.rng.gen_bool(0.7).then(|| self.phone()),
            title: self.rng.gen_bool(0.6).then(|| pick(&mut self.rng, TITLES).to_string()),
            firstname: f,
            lastname: l,
        }
    }

    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.gen_range(lo..hi)
    }
}
