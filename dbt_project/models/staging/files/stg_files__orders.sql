-- One row per order of the orders files (newest landed version per order_id). Every value
-- arrives as text exactly as in the file, already checked against the file contract
-- (extractors/files.py): dates are YYYY-MM-DD or DD.MM.YYYY, money may use spaces as
-- thousands separators and a decimal comma ("45 000,50"); the parsing macros are shared with
-- stg_files__ad_spend (macros/text_parsing.sql). A line-item order (several rows of one file
-- sharing the order_id) arrives as one record: amount, gross_margin and quantity are already
-- the sums over its lines (extractors/files.py merge_lines), the lines themselves under _lines.
with

source as (

    {{ raw_source('files', 'files__orders') }}

),

latest as (

    {{ latest_version('source') }}

),

-- the order's fields as text, each payload parsed once (macros/json.sql)
parsed as (

    select
        account,
        record_id,
        {{ json_str_columns('payload', {
            'order_id': 'order_id',
            'order_date': 'order_date',
            'amount': 'amount',
            'gross_margin': 'gross_margin',
            'currency': 'currency',
            'exchange_rate': '_rate',
            'quantity': 'quantity',
            'customer_id': 'customer_id',
            'customer_phone': 'customer_phone',
            'customer_email': 'customer_email',
            'customer_name': 'customer_name',
            'product': 'product',
            'utm_source': 'utm_source',
            'utm_medium': 'utm_medium',
            'utm_campaign': 'utm_campaign',
            'file_name': '_file',
            'file_line': '_line',
        }) }}
    from latest

),

fields as (

    select
        parsed.account,
        parsed.record_id,
        trim(parsed.order_id) as order_id,
        trim(parsed.order_date) as order_date_text,
        parsed.amount as amount_text,
        parsed.gross_margin as gross_margin_text,
        parsed.currency as currency_text,
        -- set by the files source when a foreign currency was converted (rates file)
        cast(parsed.exchange_rate as numeric(18, 6)) as exchange_rate,
        parsed.quantity as quantity_text,
        nullif(trim(parsed.customer_id), '') as shop_customer_id,
        nullif(trim(parsed.customer_phone), '') as customer_phone,
        nullif(trim(parsed.customer_email), '') as customer_email,
        {{ safe_text("nullif(trim(parsed.customer_name), '')") }}
            as customer_name,
        {{ safe_text("nullif(trim(parsed.product), '')") }}
            as product,
        {{ utm_columns('parsed.', ['utm_source', 'utm_medium', 'utm_campaign']) }},
        parsed.file_name,
        parsed.file_line
    from parsed

),

renamed as (

    select
        ----------  ids
        account,
        order_id,
        -- the raw key; identity resolution (raw.contact_points) names file orders by it
        record_id as order_record_id,
        -- the shop's own customer key: an identity key of the files account
        shop_customer_id,

        ----------  dates
        {{ parse_date_text('order_date_text') }} as order_date,

        ----------  money: in the account currency (a foreign one x the rate of its day)
        {{ money(parse_money('amount_text') ~ ' * coalesce(exchange_rate, 1)') }} as amount,
        -- an empty currency cell means the account currency, as for file ad spend; a
        -- converted row is in the account currency now
        {{ file_currency('case when exchange_rate is null then currency_text end') }}
            as currency,
        {{ money(parse_money('gross_margin_text') ~ ' * coalesce(exchange_rate, 1)') }}
            as gross_margin,
        {{ parse_money('amount_text') }} as source_amount,
        {{ file_currency('currency_text') }} as source_currency,
        exchange_rate,
        {{ parse_money('quantity_text') }} as quantity,

        ----------  text
        customer_phone,
        customer_email,
        customer_name,
        product,
        utm_source,
        utm_medium,
        utm_campaign,

        ----------  lineage
        file_name,
        cast(file_line as bigint) as file_line

    from fields

)

select * from renamed
